/**
 * `/metrics` of a real single-process `keywarden serve` (the `--workers 2` case is in
 * workers.test.ts): the per-scope lifecycle series with sane values, process metrics, a valid
 * exposition, and a key change made by another process (the CLI) reaching the gauges.
 */
import { strict as assert } from 'node:assert';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { parseExposition, sample, type Exposition } from '../helpers/prometheus';

// SHORT_POLICY (test/helpers/runtime.ts): prepublish 2m, activeFor 10m.
const PREPUBLISH = 120;
const ACTIVE_FOR = 600;
const SCOPES = ['consumer', 'enterprise'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('GET /metrics: key lifecycle (e2e, one process)', function () {
  this.timeout(180_000);
  let daemon: Daemon;
  let startedAt: number;

  const scrape = async (): Promise<Exposition> => {
    const r = await fetch(`${daemon.baseUrl}/metrics`);
    assert.equal(r.status, 200);
    return parseExposition(await r.text());
  };

  before(async () => {
    startedAt = Date.now() / 1000;
    daemon = await startDaemon({ scopes: [{ name: 'consumer' }, { name: 'enterprise', alg: 'EdDSA' }] });
  });
  after(async () => daemon?.stop());

  it('exports every scope lifecycle series with values from its key timeline', async () => {
    const e = await scrape();
    const now = Date.now() / 1000;
    for (const scope of SCOPES) {
      const age = sample(e, 'keywarden_active_key_age_seconds', scope);
      const retires = sample(e, 'keywarden_active_key_retirement_seconds', scope);
      const rotation = sample(e, 'keywarden_next_rotation_seconds', scope);
      const lastOk = sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', scope);
      assert.equal(sample(e, 'keywarden_scope_has_active_key', scope), 1, scope);
      assert.equal(sample(e, 'keywarden_published_keys', scope), 1, scope);
      assert.equal(sample(e, 'keywarden_reconcile_failures_total', scope), 0, scope);
      // `init` made the key just before the daemon started.
      assert.ok(age !== undefined && age >= 0 && age < now - startedAt, `${scope} age ${age}`);
      assert.ok(retires !== undefined && Math.abs(age + retires - ACTIVE_FOR) < 1e-6, `${scope} ${retires}`);
      assert.ok(
        rotation !== undefined && Math.abs(retires - rotation - PREPUBLISH) < 1e-6,
        `${scope} ${rotation}`,
      );
      // The daemon reconciles every scope at start.
      assert.ok(lastOk !== undefined && lastOk >= startedAt && lastOk <= now, `${scope} last ok ${lastOk}`);
    }
    assert.ok((sample(e, 'keywarden_audit_chain_length') ?? 0) > 0);
    // No internal lifecycle (the audit key's `_audit`) appears as a scope.
    const scopes = new Set([...e.samples.keys()].flatMap((s) => /scope="([^"]*)"/.exec(s)?.[1] ?? []));
    assert.deepEqual([...scopes].sort(), SCOPES);
  });

  it('exports process and Node.js metrics', async () => {
    const e = await scrape();
    assert.ok((sample(e, 'process_resident_memory_bytes') ?? 0) > 0);
    assert.ok((sample(e, 'process_cpu_user_seconds_total') ?? 0) > 0);
    assert.ok((sample(e, 'nodejs_heap_size_used_bytes') ?? 0) > 0);
    assert.ok((sample(e, 'process_start_time_seconds') ?? 0) >= Math.floor(startedAt));
  });

  it('the age grows between scrapes, and the time to rotation shrinks', async () => {
    const a = await scrape();
    await sleep(1100);
    const b = await scrape();
    const age = (e: Exposition) => sample(e, 'keywarden_active_key_age_seconds', 'consumer') as number;
    const rotation = (e: Exposition) => sample(e, 'keywarden_next_rotation_seconds', 'consumer') as number;
    assert.ok(age(b) - age(a) >= 1, `${age(a)} -> ${age(b)}`);
    assert.ok(rotation(a) - rotation(b) >= 1, `${rotation(a)} -> ${rotation(b)}`);
  });

  it('reports the orphan scan the daemon runs at start', async () => {
    let orphans: number | undefined;
    for (let i = 0; i < 50 && orphans === undefined; i++) {
      orphans = sample(await scrape(), 'keywarden_backend_orphan_objects{backend="hsm"}');
      if (orphans === undefined) await sleep(100);
    }
    assert.equal(orphans, 0);
  });

  it('a rotation by the CLI shows in the published-key count within the refresh bound', async () => {
    const r = await daemon.cli(['keys', 'rotate', '--scope', 'enterprise']);
    assert.equal(r.code, 0, r.stderr);
    const deadline = Date.now() + 1000 * daemon.config.server.keyRefreshSeconds + 4000;
    let published: number | undefined;
    while (Date.now() < deadline) {
      published = sample(await scrape(), 'keywarden_published_keys', 'enterprise');
      if (published === 2) break;
      await sleep(100);
    }
    assert.equal(published, 2);
    const e = await scrape();
    assert.equal(sample(e, 'keywarden_published_keys', 'consumer'), 1);
    // The new key is pending: the old one still signs, and the next rotation is now the new key's.
    assert.equal(sample(e, 'keywarden_scope_has_active_key', 'enterprise'), 1);
    assert.ok((sample(e, 'keywarden_next_rotation_seconds', 'enterprise') ?? 0) > ACTIVE_FOR - PREPUBLISH);
  });
});
