import { strict as assert } from 'node:assert';
import { primaryReadinessCheck, requestPrimaryReadiness } from '../../../src/cluster/primary-readiness';

describe("a worker's readiness includes the cluster primary's (src/cluster/primary-readiness.ts)", () => {
  it('a ready primary is one passing check', () => {
    const c = primaryReadinessCheck({ ok: true, checks: { store: { ok: true, detail: 'better-sqlite3' } } });
    assert.deepEqual(c, { ok: true, detail: 'the scheduling process (cluster primary) is ready' });
  });

  it('a primary that is not ready fails the check, naming only its failing checks and their reasons', () => {
    const c = primaryReadinessCheck({
      ok: false,
      checks: {
        store: { ok: true, detail: 'better-sqlite3' },
        scopes: { ok: false, detail: '1 of 2 scope(s) cannot sign: demo' },
        'scope:demo': { ok: false, detail: 'scope demo cannot sign: key generation failed 2 times in a row' },
      },
    });
    assert.equal(c.ok, false);
    assert.equal(
      c.detail,
      'the scheduling process (cluster primary) is not ready: scopes: 1 of 2 scope(s) cannot sign: demo; ' +
        'scope:demo: scope demo cannot sign: key generation failed 2 times in a row',
    );
  });

  it('no answer from a primary (here: none at all) is not ready, within the timeout', async () => {
    const started = Date.now();
    const c = await requestPrimaryReadiness(200);
    assert.equal(c.ok, false);
    assert.match(c.detail, /did not answer within 200 ms/);
    assert.ok(Date.now() - started < 2000);
  });
});
