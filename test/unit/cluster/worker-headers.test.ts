import * as assert from 'node:assert/strict';
import { WORKER_HEADER, workerResponseHeaders } from '../../../src/cluster/worker-identity';

// How createServer adds these headers to answers (fastify's routes and error answers, and the
// JWKS fast path) is tested in test/integration/http-server.test.ts.
describe('worker identity header', () => {
  it('is off by default: a worker tells clients nothing about the process layout', () => {
    assert.deepEqual(workerResponseHeaders({ workerHeader: false }, 2), {});
  });

  it('with server.workerHeader names the worker slot', () => {
    assert.deepEqual(workerResponseHeaders({ workerHeader: true }, 2), { [WORKER_HEADER]: '2' });
    assert.deepEqual(workerResponseHeaders({ workerHeader: true }, 17), { [WORKER_HEADER]: '17' });
  });
});
