/**
 * Profiles the sign route under load: `node -r tsx/cjs bench/profile/sign.ts [seconds]` starts
 * `keywarden serve --workers 1` with --cpu-prof, loads POST /v1/scopes/es256/sign with
 * wrk (its own process), stops it and prints the top self-time functions (the .cpuprofile is kept in
 * .tmp/bench/prof-sign/ for Chrome DevTools).
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { STEADY_POLICY } from '../lib/bench-policy';
import { summariseProfile } from '../lib/cpuprofile';
import { prepareKeywarden } from '../lib/keywarden';
import { runLoad } from '../lib/load';
import { idealSigner } from '../sign';
import { REPO_ROOT } from '../lib/processes';
import { rate, ms } from '../lib/stats';
import { ensureCompiled } from '../lib/build';

function print(title: string, s: ReturnType<typeof summariseProfile>, rps: number): void {
  // CPU ms of the event-loop thread per request: (1 - idle) / requests per second.
  console.log(
    `${title}: busy ${((1 - s.idle) * 100).toFixed(0)}%, ${(((1 - s.idle) * 1000) / rps).toFixed(3)} ms main-thread CPU per request`,
  );
  console.log(`  areas:\n    ${s.areas.join('\n    ')}`);
  console.log(`  functions:\n    ${s.functions.join('\n    ')}`);
  console.log(`  inclusive (ours):\n    ${s.inclusive.join('\n    ')}`);
}

async function main(): Promise<void> {
  ensureCompiled();
  const seconds = Number(process.argv[2] ?? 10);
  const dir = join(REPO_ROOT, '.tmp', 'bench', 'prof-sign');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const kw = await prepareKeywarden({ scopes: [{ name: 'es256', policy: STEADY_POLICY }], sessions: 4 });
  try {
    const secret = await kw.addClient('bench', ['es256:sign']);
    const server = await kw.serve(1, {}, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
    const r = await runLoad(
      {
        name: 'sign',
        url: `${server.baseUrl}/v1/scopes/es256/sign`,
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ claims: { sub: 'user-1', aud: 'es256-api', scope: 'read' } }),
      },
      32,
      seconds,
    );
    console.log(`${rate(r.rps)} p99 ${ms(r.p99)} failures ${r.non2xx + r.errors}`);
    await server.stop();
    const ideal = await idealSigner(kw, 'ES256', 1, ['--cpu-prof', `--cpu-prof-dir=${dir}/ideal`]);
    const r2 = await runLoad(
      {
        name: 'ideal',
        url: `${ideal.baseUrl}/sign`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ claims: { sub: 'user-1', aud: 'es256-api', scope: 'read' } }),
      },
      32,
      seconds,
    );
    console.log(`ideal: ${rate(r2.rps)} p99 ${ms(r2.p99)} failures ${r2.non2xx + r2.errors}`);
    await ideal.stop();
    for (const f of readdirSync(join(dir, 'ideal')).filter((x) => x.endsWith('.cpuprofile')))
      print(`ideal ${f}`, summariseProfile(join(dir, 'ideal', f), seconds), r2.rps);
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    let kwSummary: ReturnType<typeof summariseProfile> | undefined;
    for (const f of files)
      print(`keywarden ${f}`, (kwSummary = summariseProfile(join(dir, f), seconds)), r.rps);
    const idealFile = readdirSync(join(dir, 'ideal')).find((x) => x.endsWith('.cpuprofile'));
    if (kwSummary && idealFile) {
      const id = summariseProfile(join(dir, 'ideal', idealFile), seconds);
      // Microseconds of event-loop time per request, per area: where keywarden spends more.
      const per = (s: typeof id, m: Map<string, number>, k: string, rps: number) =>
        ((m.get(k) ?? 0) / s.samples) * (1e6 / rps);
      const keys = new Set([...kwSummary.areaSamples.keys(), ...id.areaSamples.keys()]);
      const rowsOut = [...keys]
        .map(
          (k) =>
            [
              k,
              per(kwSummary!, kwSummary!.areaSamples, k, r.rps),
              per(id, id.areaSamples, k, r2.rps),
            ] as const,
        )
        .sort((a, b) => b[1] - b[2] - (a[1] - a[2]));
      console.log('µs of event-loop time per request: keywarden vs ideal (area, kw, ideal, diff)');
      const fkeys = new Set([...kwSummary.functionSamples.keys(), ...id.functionSamples.keys()]);
      const frows = [...fkeys]
        .map(
          (k) =>
            [
              k,
              per(kwSummary!, kwSummary!.functionSamples, k, r.rps),
              per(id, id.functionSamples, k, r2.rps),
            ] as const,
        )
        .sort((a, b) => b[1] - b[2] - (a[1] - a[2]));
      console.log('µs per request by function: keywarden vs ideal (largest differences)');
      for (const [k, a, b] of frows.slice(0, 40))
        console.log(
          `  ${k.slice(0, 70).padEnd(70)} ${a.toFixed(1).padStart(7)} ${b.toFixed(1).padStart(7)} ${(a - b).toFixed(1).padStart(7)}`,
        );
      for (const [k, a, b] of rowsOut.slice(0, 25))
        console.log(
          `  ${k.padEnd(40)} ${a.toFixed(1).padStart(7)} ${b.toFixed(1).padStart(7)} ${(a - b).toFixed(1).padStart(7)}`,
        );
    }
  } finally {
    await kw.cleanup();
  }
}
void main().then(() => process.exit(0));
