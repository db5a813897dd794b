import * as assert from 'node:assert/strict';
import fastify from 'fastify';
import { WORKER_HEADER, workerPlugins } from '../../../src/cluster/worker-identity';

/** A worker's HTTP app as createServer composes it: the worker plugins, then a route. */
async function answerOf(server: { workerHeader: boolean }, slot: number) {
  const app = fastify({ logger: false });
  for (const p of workerPlugins(server, slot)) p(app);
  app.get('/scopes/demo/.well-known/jwks.json', (_req, reply) => {
    reply.send({ keys: [] });
  });
  try {
    return await app.inject({ method: 'GET', url: '/scopes/demo/.well-known/jwks.json' });
  } finally {
    await app.close();
  }
}

describe('worker identity header', () => {
  it('is off by default: a worker tells clients nothing about the process layout', async () => {
    const r = await answerOf({ workerHeader: false }, 2);
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers[WORKER_HEADER], undefined);
  });

  it('with server.workerHeader names the answering slot on every response, errors included', async () => {
    const r = await answerOf({ workerHeader: true }, 2);
    assert.equal(r.headers[WORKER_HEADER], '2');
    const app = fastify({ logger: false });
    for (const p of workerPlugins({ workerHeader: true }, 7)) p(app);
    const missing = await app.inject({ method: 'GET', url: '/nowhere' });
    await app.close();
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.headers[WORKER_HEADER], '7');
  });
});
