/**
 * The JWKS ceiling without a framework: node:http answering every request with one constant,
 * pre-serialised buffer and constant headers, at one path (404 elsewhere). Nothing is computed
 * per request; it shows what fastify's per-request machinery costs the bare fastify yardstick
 * (constant-jwks.ts), since keywarden answers its JWKS paths ahead of fastify's router.
 */
import { createServer } from 'node:http';
import { serveCluster, serverConfig } from './serve-cluster';

const config = serverConfig<{ body: string; path?: string; headers?: Record<string, string> }>();
void serveCluster(config.workers, async () => {
  const body = Buffer.from(config.body);
  const path = config.path ?? '/jwks.json';
  const headers: Record<string, string | number> = {
    'content-type': 'application/jwk-set+json',
    ...config.headers,
    'content-length': body.length,
  };
  const server = createServer((req, res) => {
    if (req.url === path) {
      res.writeHead(200, headers);
      res.end(body);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"not found"}');
    }
  });
  await new Promise<void>((res) => server.listen(config.port, '127.0.0.1', res));
});
