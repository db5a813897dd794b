/**
 * 2. JWKS: GET /scopes/:scope/.well-known/jwks.json against a bare fastify route returning the
 * same document as one constant buffer at the same path (so requests are byte for byte alike),
 * and against node-oidc-provider's /jwks. One process each, then all cores (2 workers each).
 * A second constant route also sends keywarden's headers (Cache-Control and ETag; the worker
 * header too if a configuration turns it on) as constants, so the cost of those bytes on both
 * ends of the connection is told apart from the cost of keywarden's per-request work; a third
 * is an identical copy of the first, an A/A control showing how far two identical servers
 * measure apart in the same run. A node:http server sending the same bytes as keywarden (its
 * headers included) without a framework shows the ceiling keywarden's fast path (which answers
 * JWKS requests ahead of fastify) can approach. Every round
 * starts every server afresh (measureFreshProcesses): on this VM one process can stay 10–20%
 * off its twin for its whole life.
 */
import { exportJWK, generateKeyPair } from 'jose';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { BENCH_THREADPOOL, headersKeywardenAdds, prepareKeywarden } from './lib/keywarden';
import { measureFreshProcesses, type LoadTarget, type Measured, type Round } from './lib/load';
import { freePort, startYardstick, type Server } from './lib/processes';
import type { Report } from './lib/report';
import { cpuPerThousand, median, ms, pairedRatio, rate, ratio } from './lib/stats';

const HEAD = [
  'server',
  'responses/s (median)',
  'p50',
  'p99',
  'keywarden ÷ this: median of per-round ratios (spread)',
  'server CPU per 1,000 responses',
  'wrk CPU per 1,000',
  'others max',
  'failed',
];

function rows(m: Measured[]): (string | number)[][] {
  const kw = m[0]!;
  return m.map((x) => [
    x.name,
    rate(x.rps),
    ms(x.p50),
    ms(x.p99),
    x === kw
      ? ''
      : pairedRatio(
          kw.reps.map((r) => r.rps),
          x.reps.map((r) => r.rps),
        ),
    cpuPerThousand(x.serverUs),
    cpuPerThousand(x.loadUs),
    `${(x.othersMax * 100).toFixed(0)}%`,
    x.failures,
  ]);
}

/**
 * Splits keywarden's gap to the bare constant route into the price of keywarden's extra headers
 * (constant + headers against constant) and keywarden's own per-request work (keywarden
 * against constant + headers), in throughput and in CPU per response on both ends.
 */
function decomposition(m: Measured[]): string {
  const [kw, constant, withHeaders, , twin, bare] = m as [
    Measured,
    Measured,
    Measured,
    Measured,
    Measured,
    Measured,
  ];
  const d = (a: number, b: number) => `${a - b >= 0 ? '+' : ''}${(a - b).toFixed(1)} µs`;
  return (
    `Headers alone: constant + keywarden's headers ÷ constant = ${ratio(withHeaders.rps, constant.rps)} ` +
    `(server ${d(withHeaders.serverUs, constant.serverUs)}, load generator ${d(withHeaders.loadUs, constant.loadUs)} per response). ` +
    `keywarden's own work: keywarden ÷ constant + its headers = ${ratio(kw.rps, withHeaders.rps)} ` +
    `(server ${d(kw.serverUs, withHeaders.serverUs)}, load generator ${d(kw.loadUs, withHeaders.loadUs)} per response). ` +
    `Framework: constant + keywarden's headers (fastify) ÷ the same bytes from node:http = ${ratio(withHeaders.rps, bare.rps)}; ` +
    `keywarden ÷ node:http = ${ratio(kw.rps, bare.rps)} (server ${d(kw.serverUs, bare.serverUs)} per response). ` +
    `Noise (A/A): constant ÷ its identical second process = ${ratio(constant.rps, twin.rps)} ` +
    `(server ${d(constant.serverUs, twin.serverUs)} per response). ` +
    `Per round: keywarden ÷ constant ${spread(kw, constant)}, constant ÷ second process ${spread(constant, twin)}.`
  );
}

/**
 * a ÷ b over rounds (rep i of each was measured in the same round): the range, the median of
 * the per-round ratios, and the rates summed over all rounds divided (what
 * bench/pool-rounds.ts computes across runs).
 */
function spread(a: Measured, b: Measured): string {
  const r = a.reps.map((x, i) => x.rps / b.reps[i]!.rps);
  const sorted = [...r].sort((x, y) => x - y);
  const sum = (m: Measured) => m.reps.reduce((s, x) => s + x.rps, 0);
  return (
    `${sorted[0]!.toFixed(2)}–${sorted[sorted.length - 1]!.toFixed(2)} ` +
    `(median ${median(r).toFixed(2)}, Σ rates ${(sum(a) / sum(b)).toFixed(2)})`
  );
}

export async function benchJwks(report: Report, plan: BenchPlan): Promise<void> {
  report.section('2. JWKS');
  const kw = await prepareKeywarden({ scopes: [{ name: 'jwks', policy: STEADY_POLICY }], sessions: 4 });
  try {
    // A second, pre-published key: a JWKS as relying parties usually see it (current + next).
    // Before any daemon runs: on the store and the token directly.
    const rotated = await kw.cli(['--local', 'keys', 'rotate', '--scope', 'jwks']);
    if (rotated.code !== 0) throw new Error(`keys rotate failed: ${rotated.stderr}`);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const oidcJwk = await exportJWK(privateKey);
    const path = '/scopes/jwks/.well-known/jwks.json';
    let document = '';
    for (const workers of [1, 2]) {
      const start = async (): Promise<Round> => {
        const servers: Server[] = [];
        const stop = async () => {
          while (servers.length) await servers.pop()!.stop();
        };
        try {
          const k = await kw.serve(workers);
          servers.push(k);
          const first = await fetch(`${k.baseUrl}${path}`);
          const body = await first.text();
          document = body;
          const keywardenHeaders = headersKeywardenAdds(first);
          const env = { UV_THREADPOOL_SIZE: BENCH_THREADPOOL };
          const yardsticks = await Promise.all([
            startYardstick('constant', 'constant-jwks', { port: await freePort(), workers, body, path }, env),
            startYardstick(
              'constant + headers',
              'constant-jwks',
              { port: await freePort(), workers, body, path, headers: keywardenHeaders },
              env,
            ),
            startYardstick(
              'oidc-provider',
              'oidc-provider',
              {
                port: await freePort(),
                workers,
                alg: 'ES256',
                jwk: oidcJwk,
                clientId: 'bench',
                clientSecret: 'bench-client-secret-0123456789abcdef',
                audience: 'https://api.bench.test',
              },
              env,
            ),
            // An A/A control: a second process identical to the first constant one. How far
            // apart two identical servers measure is the noise every other ratio carries.
            startYardstick(
              'constant twin',
              'constant-jwks',
              { port: await freePort(), workers, body, path },
              env,
            ),
            startYardstick(
              'node:http constant + headers',
              'constant-jwks-http',
              { port: await freePort(), workers, body, path, headers: keywardenHeaders },
              env,
            ),
          ]);
          servers.push(...yardsticks);
          const [constant, withHeaders, oidc, twin, bare] = yardsticks as [
            Server,
            Server,
            Server,
            Server,
            Server,
          ];
          return {
            targets: [
              { name: `keywarden jwks.json x${workers}`, url: `${k.baseUrl}${path}`, pid: k.pid },
              { name: `constant buffer x${workers}`, url: `${constant.baseUrl}${path}`, pid: constant.pid },
              {
                name: `constant + keywarden's headers x${workers}`,
                url: `${withHeaders.baseUrl}${path}`,
                pid: withHeaders.pid,
              },
              { name: `oidc-provider /jwks x${workers}`, url: `${oidc.baseUrl}/jwks`, pid: oidc.pid },
              {
                name: `constant buffer (second process) x${workers}`,
                url: `${twin.baseUrl}${path}`,
                pid: twin.pid,
              },
              {
                name: `node:http constant + keywarden's headers x${workers}`,
                url: `${bare.baseUrl}${path}`,
                pid: bare.pid,
              },
            ] satisfies LoadTarget[],
            stop,
          };
        } catch (e) {
          await stop();
          throw e;
        }
      };
      const m = await measureFreshProcesses(start, plan);
      if (workers === 1) {
        report.note(
          `Document: ${Buffer.byteLength(document)} bytes, ${(JSON.parse(document) as { keys: unknown[] }).keys.length} keys ` +
            '(keywarden adds Cache-Control and ETag per request; the constant route sends only content-type; ' +
            '"constant + keywarden\'s headers" sends the headers keywarden sent as constants; every constant route answers ' +
            'the same path as keywarden; "second process" is an identical copy of the constant route, an A/A ' +
            "control for this run's noise; \"node:http\" sends keywarden's bytes, headers included, with no framework). CPU µs per response: the server's processes, and the load generator " +
            '(wrk, a process of its own, sharing the 2 cores). ' +
            `wrk -t1 -c${plan.connections}; ${plan.reps} rounds, each starting every server afresh, ` +
            `warming each up for ${plan.warmupSeconds} s and measuring each for ${plan.seconds} s; medians over rounds.`,
        );
      }
      report.note(`**${workers === 1 ? 'One process each' : 'All cores: 2 worker processes each'}**`);
      report.table(HEAD, rows(m));
      report.note(decomposition(m));
    }
  } finally {
    await kw.cleanup();
  }
}
