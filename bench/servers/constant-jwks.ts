/**
 * The JWKS yardstick: a bare fastify route answering every request with one constant,
 * pre-serialised buffer (the JWKS keywarden serves), with the same content type, at a given path
 * (bench/jwks.ts passes keywarden's, so the requests are alike). Nothing is
 * computed per request: the ceiling for a JWKS endpoint in fastify on this machine.
 */
import fastify from 'fastify';
import { serveCluster, serverConfig } from './serve-cluster';

const config = serverConfig<{ body: string; path?: string; headers?: Record<string, string> }>();
void serveCluster(config.workers, async () => {
  const body = Buffer.from(config.body);
  // Optional constant extra headers (the second yardstick: the same bytes keywarden sends).
  const extra = Object.entries(config.headers ?? {});
  const app = fastify({ logger: false });
  app.get(config.path ?? '/jwks.json', (_req, reply) => {
    reply.header('content-type', 'application/jwk-set+json');
    for (const [k, v] of extra) reply.header(k, v);
    reply.send(body);
  });
  await app.listen({ host: '127.0.0.1', port: config.port });
});
