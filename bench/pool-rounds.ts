/**
 * `npx tsx bench/pool-rounds.ts LOG...`: pools the rounds of several `npm run bench -- jwks`
 * runs from their progress logs (the per-round rates each run prints on stderr, saved with
 * `2> FILE`). One run's medians move by 10% on this VM; docs/benchmarks.md §2 quotes the
 * pooled figures this prints, for one process (x1) and all cores (x2):
 * - Σ rates ÷ Σ rates: each server's rates summed over every round, then divided;
 * - the median over rounds of the per-round ratio (both servers measured in the same round).
 * Only rounds in which all three of keywarden, the constant route and the constant route with
 * keywarden's headers were measured count. `--max-others PCT` also drops every round in which
 * other processes used more than PCT% of the machine during any server's measurement (a
 * compile or a test run started by hand is the usual culprit).
 */
import { readFileSync } from 'node:fs';
import { median } from './lib/stats';

const KEYWARDEN = 'keywarden jwks.json';
const CONSTANT = 'constant buffer';
const WITH_HEADERS = "constant + keywarden's headers";
const TWIN = 'constant buffer (second process)';
const NODE_HTTP = "node:http constant + keywarden's headers";

type Round = Map<string, number>;

/** The highest share of the machine other processes used during any measurement of a round (%). */
const othersOf = new WeakMap<Round, number>();

/** Earlier names of the same server in older logs. */
const RENAMED: Record<string, string> = { 'constant + caching headers': WITH_HEADERS };

/** Every round of a log: server name and worker count ("keywarden jwks.json x1") to its rate. */
export function roundsOf(log: string): Round[] {
  const rounds: Round[] = [];
  let current: Round | null = null;
  for (const line of log.split('\n')) {
    if (/^\s+round \d+\/\d+/.test(line)) {
      current = new Map();
      rounds.push(current);
      continue;
    }
    const m = /^\s+(.+?) (x\d+) rep \d+\/\d+: ([\d,]+)\/s/.exec(line);
    if (m && current) {
      current.set(`${RENAMED[m[1]!] ?? m[1]!} ${m[2]!}`, Number(m[3]!.replace(/,/g, '')));
      const others = /others used (\d+)% of the machine/.exec(line);
      if (others) othersOf.set(current, Math.max(othersOf.get(current) ?? 0, Number(others[1])));
    }
  }
  return rounds;
}

function pooled(rounds: Round[], a: string, b: string): { sums: number; medianOfRatios: number } | null {
  const pairs = rounds.filter((r) => r.has(a) && r.has(b)).map((r) => [r.get(a)!, r.get(b)!] as const);
  if (pairs.length === 0) return null;
  const sum = (i: 0 | 1) => pairs.reduce((s, p) => s + p[i], 0);
  return { sums: sum(0) / sum(1), medianOfRatios: median(pairs.map(([x, y]) => x / y)) };
}

function main(args: string[]): void {
  let maxOthers = Infinity;
  const at = args.indexOf('--max-others');
  if (at >= 0) {
    maxOthers = Number(args[at + 1]);
    if (!Number.isFinite(maxOthers) || maxOthers < 0) throw new Error('--max-others takes a percentage');
    args.splice(at, 2);
  }
  const files = args;
  if (files.length === 0) throw new Error('usage: npx tsx bench/pool-rounds.ts [--max-others PCT] LOG...');
  const read = files.flatMap((f) => roundsOf(readFileSync(f, 'utf8')));
  const all = read.filter((r) => (othersOf.get(r) ?? 0) <= maxOthers);
  if (all.length < read.length)
    console.log(
      `${read.length - all.length} of ${read.length} rounds dropped: others used more than ${maxOthers}%\n`,
    );
  console.log(
    '| workers | rounds | keywarden ÷ constant (Σ rates) | (median per round) | keywarden ÷ constant + its headers | constant + headers ÷ constant | A/A | keywarden ÷ node:http (rounds that had it) |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const x of ['x1', 'x2']) {
    const rounds = all.filter((r) => [KEYWARDEN, CONSTANT, WITH_HEADERS].every((n) => r.has(`${n} ${x}`)));
    const f = (a: string, b: string, k: 'sums' | 'medianOfRatios' = 'sums') =>
      pooled(rounds, `${a} ${x}`, `${b} ${x}`)?.[k].toFixed(3) ?? '—';
    console.log(
      `| ${x} | ${rounds.length} | ${f(KEYWARDEN, CONSTANT)} | ${f(KEYWARDEN, CONSTANT, 'medianOfRatios')} | ` +
        `${f(KEYWARDEN, WITH_HEADERS)} | ${f(WITH_HEADERS, CONSTANT)} | ${f(CONSTANT, TWIN)} | ${f(KEYWARDEN, NODE_HTTP)} |`,
    );
  }
}

if (require.main === module) main(process.argv.slice(2));
