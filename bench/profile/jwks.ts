/**
 * Profiles the JWKS route against the constant-buffer yardstick answering the same path with
 * keywarden's caching headers as constants: `node -r tsx/cjs bench/profile/jwks.ts [seconds]`.
 * Both run with --cpu-prof under the same wrk load; prints event-loop µs per request by
 * area and by function, largest differences first, so what remains is keywarden's own work.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { STEADY_POLICY } from '../lib/bench-policy';
import { ensureCompiled } from '../lib/build';
import { summariseProfile, type ProfileSummary } from '../lib/cpuprofile';
import { headersKeywardenAdds, prepareKeywarden } from '../lib/keywarden';
import { runLoad } from '../lib/load';
import { freePort, REPO_ROOT, startYardstick } from '../lib/processes';
import { rate } from '../lib/stats';

function compare(
  a: ProfileSummary,
  aRps: number,
  b: ProfileSummary,
  bRps: number,
  by: 'areaSamples' | 'functionSamples',
) {
  const per = (s: ProfileSummary, k: string, rps: number) => ((s[by].get(k) ?? 0) / s.samples) * (1e6 / rps);
  return [...new Set([...a[by].keys(), ...b[by].keys()])]
    .map((k) => [k, per(a, k, aRps), per(b, k, bRps)] as const)
    .sort((x, y) => y[1] - y[2] - (x[1] - x[2]))
    .slice(0, 25)
    .map(
      ([k, x, y]) =>
        `  ${k.slice(0, 70).padEnd(70)} ${x.toFixed(1).padStart(7)} ${y.toFixed(1).padStart(7)} ${(x - y).toFixed(1).padStart(7)}`,
    );
}

async function main(): Promise<void> {
  ensureCompiled();
  const seconds = Number(process.argv[2] ?? 8);
  const dir = join(REPO_ROOT, '.tmp', 'bench', 'prof-jwks');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'kw'), { recursive: true });
  mkdirSync(join(dir, 'const'), { recursive: true });
  const kw = await prepareKeywarden({ scopes: [{ name: 'jwks', policy: STEADY_POLICY }], sessions: 4 });
  try {
    const server = await kw.serve(1, {}, ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'kw')}`]);
    const url = `${server.baseUrl}/scopes/jwks/.well-known/jwks.json`;
    const first = await fetch(url);
    const body = await first.text();
    // The yardstick answers the same path with the same caching headers (as constants), so the
    // difference is keywarden's own per-request work.
    const path = new URL(url).pathname;
    const headers = headersKeywardenAdds(first);
    const a = await runLoad({ name: 'kw', url }, 32, seconds);
    await server.stop();
    const c = await startYardstick(
      'const',
      'constant-jwks',
      { port: await freePort(), workers: 1, body, path, headers },
      {},
      ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'const')}`],
    );
    const b = await runLoad({ name: 'const', url: `${c.baseUrl}${path}` }, 32, seconds);
    await c.stop();
    const pa = summariseProfile(join(dir, 'kw', readdirSync(join(dir, 'kw'))[0]!), seconds);
    const pb = summariseProfile(join(dir, 'const', readdirSync(join(dir, 'const'))[0]!), seconds);
    console.log(
      `keywarden ${rate(a.rps)} (busy ${((1 - pa.idle) * 100).toFixed(0)}%), constant ${rate(b.rps)} (busy ${((1 - pb.idle) * 100).toFixed(0)}%)`,
    );
    console.log('event-loop µs per request (keywarden, constant, difference) by area:');
    console.log(compare(pa, a.rps, pb, b.rps, 'areaSamples').join('\n'));
    console.log('by function:');
    console.log(compare(pa, a.rps, pb, b.rps, 'functionSamples').join('\n'));
  } finally {
    await kw.cleanup();
  }
}
void main().then(() => process.exit(0));
