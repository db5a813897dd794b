/**
 * What registering per-scope routes costs fastify, against the one parametric route per path the
 * daemon registers (src/http/routes.ts): `node -r tsx/cjs bench/route-registration.ts [sizes...]`
 * (default 5000 10000 20000 scopes, two static routes per scope as the daemon had: JWKS and key
 * events). Each size in a fresh fastify instance; time to `ready()` and the heap it kept.
 */
import fastify from 'fastify';

async function registration(scopes: number, parametric: boolean): Promise<{ ms: number; heapMiB: number }> {
  const app = fastify();
  const heapBefore = process.memoryUsage().heapUsed;
  const started = performance.now();
  const handler = async () => 'x';
  if (parametric) {
    app.get('/scopes/:scope/.well-known/jwks.json', handler);
    app.get('/scopes/:scope/key-events', handler);
  } else {
    for (let i = 0; i < scopes; i++) {
      app.get(`/scopes/s${i}/.well-known/jwks.json`, handler);
      app.get(`/scopes/s${i}/key-events`, handler);
    }
  }
  await app.ready();
  const out = {
    ms: performance.now() - started,
    heapMiB: (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20,
  };
  await app.close();
  return out;
}

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number);
  console.log('| scopes | static routes: ready after | heap | one parametric route per path: ready after |');
  console.log('| --- | --- | --- | --- |');
  for (const n of sizes.length > 0 ? sizes : [5000, 10000, 20000]) {
    const stat = await registration(n, false);
    const param = await registration(n, true);
    console.log(
      `| ${n} | ${(stat.ms / 1000).toFixed(1)} s | ${stat.heapMiB.toFixed(0)} MiB | ${param.ms.toFixed(1)} ms |`,
    );
  }
}

void main();
