/**
 * 2. JWKS: GET /scopes/:scope/.well-known/jwks.json against a bare fastify route returning the
 * same document as one constant buffer, and against node-oidc-provider's /jwks. One process
 * each, then all cores (2 workers each). A second constant route also sends keywarden's two
 * caching headers (Cache-Control, ETag) as constants, so the cost of those bytes on both ends
 * of the connection is told apart from the cost of keywarden's per-request work.
 */
import { exportJWK, generateKeyPair } from 'jose';
import { STEADY_POLICY, type BenchPlan } from './lib/bench-policy';
import { BENCH_THREADPOOL, prepareKeywarden } from './lib/keywarden';
import { measureInterleaved, type LoadTarget, type Measured } from './lib/load';
import { freePort, startYardstick, type Server } from './lib/processes';
import type { Report } from './lib/report';
import { ms, rate, ratio } from './lib/stats';

const HEAD = ['server', 'responses/s (median)', 'p50', 'p99', 'keywarden ÷ this', 'others max', 'failed'];

function rows(m: Measured[]): (string | number)[][] {
  const kw = m[0]!;
  return m.map((x) => [
    x.name,
    rate(x.rps),
    ms(x.p50),
    ms(x.p99),
    x === kw ? '' : ratio(kw.rps, x.rps),
    `${(x.othersMax * 100).toFixed(0)}%`,
    x.failures,
  ]);
}

export async function benchJwks(report: Report, plan: BenchPlan): Promise<void> {
  report.section('2. JWKS');
  const kw = await prepareKeywarden({ scopes: [{ name: 'jwks', policy: STEADY_POLICY }], sessions: 4 });
  const servers: Server[] = [];
  try {
    // A second, pre-published key: a JWKS as relying parties usually see it (current + next).
    const rotated = await kw.cli(['keys', 'rotate', '--scope', 'jwks']);
    if (rotated.code !== 0) throw new Error(`keys rotate failed: ${rotated.stderr}`);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const oidcJwk = await exportJWK(privateKey);
    for (const workers of [1, 2]) {
      const k = await kw.serve(workers);
      servers.push(k);
      const path = '/scopes/jwks/.well-known/jwks.json';
      const first = await fetch(`${k.baseUrl}${path}`);
      const body = await first.text();
      const cachingHeaders = {
        'cache-control': first.headers.get('cache-control') ?? '',
        etag: first.headers.get('etag') ?? '',
      };
      const constant = await startYardstick(
        `constant buffer x${workers}`,
        'constant-jwks',
        { port: await freePort(), workers, body },
        { UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
      );
      servers.push(constant);
      const constantWithHeaders = await startYardstick(
        `constant + headers x${workers}`,
        'constant-jwks',
        { port: await freePort(), workers, body, headers: cachingHeaders },
        { UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
      );
      servers.push(constantWithHeaders);
      const oidc = await startYardstick(
        `oidc-provider x${workers}`,
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
        { UV_THREADPOOL_SIZE: BENCH_THREADPOOL },
      );
      servers.push(oidc);
      const targets: LoadTarget[] = [
        { name: `keywarden jwks.json x${workers}`, url: `${k.baseUrl}${path}` },
        { name: `constant buffer x${workers}`, url: `${constant.baseUrl}/jwks.json` },
        { name: `constant + caching headers x${workers}`, url: `${constantWithHeaders.baseUrl}/jwks.json` },
        { name: `oidc-provider /jwks x${workers}`, url: `${oidc.baseUrl}/jwks` },
      ];
      if (workers === 1) {
        report.note(
          `Document: ${Buffer.byteLength(body)} bytes, ${(JSON.parse(body) as { keys: unknown[] }).keys.length} keys ` +
            '(keywarden adds Cache-Control and ETag per request; the constant route sends only content-type; ' +
            '"constant + caching headers" sends the same two headers as constants). ' +
            `autocannon ${plan.connections} connections; ${plan.reps} x ${plan.seconds} s after ${plan.warmupSeconds} s warm-up.`,
        );
      }
      const m = await measureInterleaved(targets, plan);
      report.note(`**${workers === 1 ? 'One process each' : 'All cores: 2 worker processes each'}**`);
      report.table(HEAD, rows(m));
      while (servers.length) await servers.pop()!.stop();
    }
  } finally {
    for (const s of servers) await s.stop();
    await kw.cleanup();
  }
}
