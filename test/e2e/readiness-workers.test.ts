/**
 * #18 item 7 with `serve --workers 2` (the default on a multi-core host): key generation runs in
 * the cluster primary, but `/readyz` is answered by the workers. A worker's readiness therefore
 * includes the primary's (the `scheduler` check): while the primary's key generation keeps
 * failing, every worker answers 503 naming it, and 200 again once a generation succeeds. The
 * generations fail in a real fault-injecting PKCS#11 module in front of SoftHSM2
 * (test/helpers/fault-pkcs11), which only the primary calls C_GenerateKeyPair through.
 */
import { strict as assert } from 'node:assert';
import { request } from 'node:http';
import { WORKER_HEADER } from '../../src/cluster/worker-identity';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { createFaultModule, type FaultModule } from '../helpers/fault-pkcs11';

interface Readyz {
  status: number;
  worker: number;
  checks: Record<string, { ok: boolean; detail: string }>;
}

/** `/readyz` on a fresh connection, so the cluster's round robin reaches each worker in turn. */
function readyz(daemon: Daemon): Promise<Readyz> {
  return new Promise((resolve, reject) => {
    const req = request(`${daemon.baseUrl}/readyz`, { agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () =>
        resolve({
          status: r.statusCode ?? 0,
          worker: Number(r.headers[WORKER_HEADER]),
          checks: (JSON.parse(body) as { checks: Readyz['checks'] }).checks,
        }),
      );
      r.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * `/readyz` from every worker: fresh connections until every slot answered, for up to 15 s. The
 * cluster primary hands a connection only to a worker that is free, so while one worker is busy
 * (its own key poll, on a loaded machine) a burst of quick requests can all reach the other.
 */
async function fromEveryWorker(daemon: Daemon, workers: number): Promise<Readyz[]> {
  const seen = new Map<number, Readyz>();
  const until = Date.now() + 15_000;
  while (seen.size < workers && Date.now() < until) {
    const r = await readyz(daemon);
    seen.set(r.worker, r);
    if (seen.size < workers) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(seen.size, workers, `answers from workers ${[...seen.keys()].join(', ')} only`);
  return [...seen.values()];
}

describe('readiness with serve --workers 2: the primary’s failing key generation (e2e)', function () {
  this.timeout(180_000);
  let daemon: Daemon;
  let faults: FaultModule;

  before(async () => {
    daemon = await startDaemon({
      scopes: [{ name: 'demo' }],
      workers: 2,
      workerHeader: true,
      hsmModule: async (token) => {
        faults = await createFaultModule(token);
        return { module: faults.modulePath, moduleEnv: faults.moduleEnv, close: () => faults.cleanup() };
      },
    });
  });

  after(async () => {
    await daemon?.stop();
  });

  it('every worker answers 503 naming the scheduler while generations fail twice in a row, and 200 after one succeeds', async () => {
    for (const r of await fromEveryWorker(daemon, 2)) assert.equal(r.status, 200, JSON.stringify(r.checks));

    await faults.inject([{ fn: 'C_GenerateKeyPair', rv: 'CKR_FUNCTION_FAILED' }]);
    for (let i = 0; i < 2; i++) {
      // keys rotate runs in the primary (the admin socket), as scheduled rotations do.
      const r = await daemon.cli(['keys', 'rotate', '--scope', 'demo']);
      assert.notEqual(r.code, 0, r.stdout);
    }
    assert.ok((await faults.hits()).some((h) => h.startsWith('C_GenerateKeyPair')));
    for (const r of await fromEveryWorker(daemon, 2)) {
      assert.equal(r.status, 503, `worker ${r.worker}: ${JSON.stringify(r.checks)}`);
      assert.equal(r.checks.scheduler?.ok, false);
      assert.match(
        r.checks.scheduler?.detail ?? '',
        /scope demo cannot sign: key generation failed 2 times in a row since .*BACKEND_ERROR/,
      );
    }

    await faults.clear();
    const ok = await daemon.cli(['keys', 'rotate', '--scope', 'demo']);
    assert.equal(ok.code, 0, ok.stderr);
    for (const r of await fromEveryWorker(daemon, 2)) {
      assert.equal(r.status, 200, `worker ${r.worker}: ${JSON.stringify(r.checks)}`);
      assert.equal(r.checks.scheduler?.ok, true);
    }
  });
});
