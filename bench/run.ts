/**
 * `npm run bench [-- NAME... [--quick] [--reps N] [--alg ALG]... [--out FILE]]`: runs the benchmarks (all, or
 * the named ones: sign jwks verify scale rotation idle p11kit revocation), each against its yardstick in the same
 * run (`--alg ES256`: the sign benchmark measures that algorithm only; ES256 is also the one it runs on all cores), and
 * prints a Markdown report (progress goes to stderr). No benchmark asserts anything: the
 * numbers are for docs/benchmarks.md. Loopback only; every server it starts is stopped.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { BenchPlan } from './lib/bench-policy';
import { uptimeLine } from './lib/machine';
import { Report } from './lib/report';
import { benchIdle } from './idle';
import { benchJwks } from './jwks';
import { benchP11Kit } from './p11kit';
import { benchRevocation } from './revocation';
import { benchRotation } from './rotation';
import { benchScale } from './scale';
import { benchSign } from './sign';
import { benchVerify } from './verify';
import { ensureCompiled } from './lib/build';

const BENCHMARKS: Record<string, (r: Report, p: BenchPlan) => Promise<void>> = {
  sign: benchSign,
  jwks: benchJwks,
  verify: benchVerify,
  scale: benchScale,
  rotation: benchRotation,
  idle: benchIdle,
  p11kit: benchP11Kit,
  revocation: benchRevocation,
};

/** wrk is the load generator (its own process): without it no ratio here would mean anything. */
function requireWrk(): void {
  const found = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (found.error) {
    throw new Error('wrk (the load generator) is not installed: run `bash scripts/install-deps.sh --bench`');
  }
}

async function main(): Promise<void> {
  requireWrk();
  ensureCompiled();
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const outAt = args.indexOf('--out');
  const out = outAt >= 0 ? args[outAt + 1] : undefined;
  // More interleaved repetitions narrow the median on a noisy (virtual) machine.
  const repsAt = args.indexOf('--reps');
  const reps = repsAt >= 0 ? Number(args[repsAt + 1]) : undefined;
  if (reps !== undefined && (!Number.isInteger(reps) || reps < 1 || reps > 50))
    throw new Error('--reps takes a whole number from 1 to 50');
  const algAt = args.flatMap((a, i) => (a === '--alg' ? [i] : []));
  const algs = algAt.map((i) => args[i + 1] ?? '');
  const valueAt = new Set([outAt, repsAt, ...algAt].filter((i) => i >= 0).map((i) => i + 1));
  const names = args.filter((a, i) => !a.startsWith('--') && !valueAt.has(i));
  for (const n of names)
    if (!BENCHMARKS[n])
      throw new Error(`unknown benchmark ${n}; one of ${Object.keys(BENCHMARKS).join(', ')}`);
  const plan: BenchPlan = {
    ...(quick
      ? { connections: 32, warmupSeconds: 2, reps: reps ?? 3, seconds: 3, quick }
      : { connections: 32, warmupSeconds: 3, reps: reps ?? 3, seconds: 5, quick }),
    ...(algs.length > 0 ? { algs } : {}),
  };
  const report = new Report();
  report.header(`npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`);
  for (const name of names.length ? names : Object.keys(BENCHMARKS)) {
    await BENCHMARKS[name]!(report, plan);
    if (out) writeFileSync(out, report.text());
  }
  report.note(`Load after: ${uptimeLine()}`);
  const text = report.text();
  if (out) writeFileSync(out, text);
  process.stdout.write(`${text}\n`);
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    process.stderr.write(`bench failed: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
