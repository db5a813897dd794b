/**
 * The key lifecycle's Prometheus metrics on the real lifecycle: a SoftHSM2 token, a SQLite store,
 * the Scheduler's hooks, and a FakeClock moved by the test. Every gauge is read the way Prometheus
 * reads it: from the registry's text, parsed strictly.
 */
import * as assert from 'node:assert/strict';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { primaryMetricsRegistry } from '../../src/cluster/cluster-metrics';
import { LifecycleMetrics } from '../../src/http/lifecycle-metrics';
import { TokenServiceMetrics } from '../../src/http/metrics';
import { createHttpServer } from '../../src/daemon';
import { auditChainLength } from '../../src/audit/query';
import { Scheduler } from '../../src/scheduler/scheduler';
import { parseExposition, sample, type Exposition } from '../helpers/prometheus';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

// SHORT_POLICY: prepublish 2m, activeFor 10m, verifyGrace 5m.
const PREPUBLISH = 120;
const ACTIVE_FOR = 600;
const VERIFY_GRACE = 300;

const scrape = async (m: LifecycleMetrics): Promise<Exposition> =>
  parseExposition(await m.registry.metrics());
const nowSeconds = (t: TestRuntime) => t.clock.now().getTime() / 1000;

describe('lifecycle metrics (integration, SoftHSM2 + FakeClock)', function () {
  this.timeout(120_000);

  describe('per-scope gauges', () => {
    let t: TestRuntime;
    let metrics: LifecycleMetrics;
    let scheduler: Scheduler;

    before(async () => {
      t = await startTestRuntime([{ name: 'alpha' }, { name: 'beta' }]);
      metrics = new LifecycleMetrics(t.kw);
      scheduler = new Scheduler(t.kw, metrics.schedulerHooks(), { jobs: [] });
    });
    after(async () => {
      await scheduler?.stop();
      await t?.close();
    });

    it('before any reconcile: no active key, nothing published, no made-up age', async () => {
      const e = await scrape(metrics);
      for (const scope of ['alpha', 'beta']) {
        assert.equal(sample(e, 'keywarden_scope_has_active_key', scope), 0);
        assert.equal(sample(e, 'keywarden_published_keys', scope), 0);
        assert.equal(sample(e, 'keywarden_reconcile_failures_total', scope), 0);
        assert.equal(sample(e, 'keywarden_scope_active_for_seconds', scope), ACTIVE_FOR);
        assert.equal(sample(e, 'keywarden_active_key_age_seconds', scope), undefined);
        assert.equal(sample(e, 'keywarden_active_key_retirement_seconds', scope), undefined);
        assert.equal(sample(e, 'keywarden_next_rotation_seconds', scope), undefined);
        assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', scope), undefined);
      }
      // Declared, so dashboards find the families before the first value.
      assert.equal(e.types.get('keywarden_active_key_age_seconds'), 'gauge');
      assert.equal(e.types.get('keywarden_reconcile_failures_total'), 'counter');
    });

    it('after a reconcile: the first key signs, with its timeline as the gauges', async () => {
      await scheduler.runScope('alpha');
      const e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 1);
      assert.equal(sample(e, 'keywarden_active_key_age_seconds', 'alpha'), 0);
      assert.equal(sample(e, 'keywarden_active_key_retirement_seconds', 'alpha'), ACTIVE_FOR);
      assert.equal(sample(e, 'keywarden_next_rotation_seconds', 'alpha'), ACTIVE_FOR - PREPUBLISH);
      assert.equal(sample(e, 'keywarden_published_keys', 'alpha'), 1);
      assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', 'alpha'), nowSeconds(t));
      // The other scope is reported on its own: it has not been reconciled.
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'beta'), 0);
      assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', 'beta'), undefined);
    });

    it('as the clock moves, the age grows and the times to rotation and retirement shrink', async () => {
      t.clock.advanceSeconds(100);
      const e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_active_key_age_seconds', 'alpha'), 100);
      assert.equal(sample(e, 'keywarden_active_key_retirement_seconds', 'alpha'), ACTIVE_FOR - 100);
      assert.equal(sample(e, 'keywarden_next_rotation_seconds', 'alpha'), ACTIVE_FOR - PREPUBLISH - 100);
      t.clock.advanceSeconds(0.25);
      const later = await scrape(metrics);
      assert.equal(sample(later, 'keywarden_active_key_age_seconds', 'alpha'), 100.25);
    });

    it('an overdue rotation shows as a negative time; the reconcile that rotates publishes a second key', async () => {
      const chainBefore = sample(await scrape(metrics), 'keywarden_audit_chain_length');
      t.clock.advanceSeconds(ACTIVE_FOR - PREPUBLISH - 100.25 + 10); // 10 s past the successor's due time
      const overdue = await scrape(metrics);
      assert.equal(sample(overdue, 'keywarden_next_rotation_seconds', 'alpha'), -10);
      assert.equal(sample(overdue, 'keywarden_published_keys', 'alpha'), 1);

      await scheduler.runScope('alpha');
      const e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_published_keys', 'alpha'), 2);
      // The next rotation is the successor's: it activates at 600 and retires at 1200.
      assert.equal(sample(e, 'keywarden_next_rotation_seconds', 'alpha'), 2 * ACTIVE_FOR - PREPUBLISH - 490);
      // The first key still signs until 600.
      assert.equal(sample(e, 'keywarden_active_key_age_seconds', 'alpha'), 490);
      assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', 'alpha'), nowSeconds(t));
      // The rotation was audited: the chain grew, and the gauge is the chain's real length.
      const chain = sample(e, 'keywarden_audit_chain_length');
      assert.ok(
        chainBefore !== undefined && chain !== undefined && chain > chainBefore,
        `${chainBefore} -> ${chain}`,
      );
      assert.equal(chain, await auditChainLength(t.ctx));
    });

    it('at the hand-over the successor is the active key; the retired key leaves the count at expiry', async () => {
      t.clock.advanceSeconds(600 - 490 + 5);
      const e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_active_key_age_seconds', 'alpha'), 5);
      assert.equal(sample(e, 'keywarden_active_key_retirement_seconds', 'alpha'), ACTIVE_FOR - 5);
      assert.equal(sample(e, 'keywarden_published_keys', 'alpha'), 2);
      t.clock.advanceSeconds(VERIFY_GRACE);
      assert.equal(sample(await scrape(metrics), 'keywarden_published_keys', 'alpha'), 1);
    });

    it('once every key is past its life and nothing reconciled, the signing-key series disappear', async () => {
      t.clock.advanceSeconds(2 * ACTIVE_FOR + VERIFY_GRACE);
      const e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 0);
      assert.equal(sample(e, 'keywarden_published_keys', 'alpha'), 0);
      assert.equal(sample(e, 'keywarden_active_key_age_seconds', 'alpha'), undefined);
      assert.equal(sample(e, 'keywarden_active_key_retirement_seconds', 'alpha'), undefined);
      assert.equal(sample(e, 'keywarden_next_rotation_seconds', 'alpha'), undefined);
      // The last success stays what it was: it is a time in the past, not a state.
      assert.ok((sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', 'alpha') ?? 0) > 0);
      await scheduler.runScope('alpha');
      assert.equal(sample(await scrape(metrics), 'keywarden_scope_has_active_key', 'alpha'), 1);
    });

    it('a heartbeat that finds nothing due counts the skips and sets the success timestamp', async () => {
      const skippedBefore = (await scrape(metrics)).samples.get(
        'keywarden_reconciles_total{outcome="skipped"}',
      );
      const runBefore = (await scrape(metrics)).samples.get('keywarden_reconciles_total{outcome="run"}') ?? 0;
      assert.equal(skippedBefore, 0);
      await scheduler.runScope('beta'); // beta's first key: both scopes now have nothing due
      t.clock.advanceSeconds(1);
      assert.deepEqual(await scheduler.pass(['alpha', 'beta'], 'heartbeat'), {
        checked: 2,
        skipped: 2,
        queued: 0,
      });
      const e = await scrape(metrics);
      assert.equal(e.samples.get('keywarden_reconciles_total{outcome="skipped"}'), 2);
      assert.equal(e.samples.get('keywarden_reconciles_total{outcome="run"}'), runBefore + 1);
      assert.equal(e.types.get('keywarden_reconciles_total'), 'counter');
      for (const scope of ['alpha', 'beta']) {
        assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', scope), nowSeconds(t));
      }
    });

    it('the lifecycle names do not clash with the token service or the primary process metrics', async () => {
      const token = new TokenServiceMetrics(t.config);
      // Registry.merge throws on a name registered twice.
      const all = Registry.merge([token.registry, primaryMetricsRegistry([metrics.registry])]);
      const e = parseExposition(await all.metrics());
      assert.ok(e.types.has('keywarden_sign_requests_total'));
      assert.ok(e.types.has('keywarden_primary_process_cpu_user_seconds_total'));
      assert.ok(e.types.has('process_cpu_user_seconds_total'));
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 1);
    });
  });

  describe('reconcile failures', () => {
    let t: TestRuntime;
    let metrics: LifecycleMetrics;
    let scheduler: Scheduler;

    before(async () => {
      // The backend cannot be opened: its PIN file is gone. The runtime opens backends on first
      // use, and its first use is the start-up integrity check, so the file goes before that.
      t = await startTestRuntime([{ name: 'alpha' }], {
        beforeOpen: (token) => rename(join(token.dir, 'user-pin'), join(token.dir, 'user-pin.away')),
      });
      metrics = new LifecycleMetrics(t.kw);
      scheduler = new Scheduler(t.kw, metrics.schedulerHooks(), { jobs: [] });
    });
    after(async () => {
      await scheduler?.stop();
      await t?.close();
    });

    it('counts each failed reconcile, and records success only once one succeeds', async () => {
      const pin = join(t.token.dir, 'user-pin');
      await scheduler.runScope('alpha');
      let e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_reconcile_failures_total', 'alpha'), 1);
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 0);
      assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', 'alpha'), undefined);

      t.clock.advanceSeconds(60);
      await scheduler.runScope('alpha');
      e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_reconcile_failures_total', 'alpha'), 2);

      await rename(`${pin}.away`, pin);
      t.clock.advanceSeconds(60);
      await scheduler.runScope('alpha');
      e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_reconcile_failures_total', 'alpha'), 2);
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 1);
      assert.equal(sample(e, 'keywarden_last_reconcile_success_timestamp_seconds', 'alpha'), nowSeconds(t));
    });
  });

  describe('a store that cannot be read', () => {
    let t: TestRuntime;

    before(async () => {
      t = await startTestRuntime([{ name: 'alpha' }]);
    });
    after(async () => t?.close());

    it('leaves out the audit chain length and serves the rest', async () => {
      const metrics = new LifecycleMetrics(t.kw);
      await new Scheduler(t.kw, metrics.schedulerHooks(), { jobs: [] }).runScope('alpha');
      assert.ok((sample(await scrape(metrics), 'keywarden_audit_chain_length') ?? 0) > 0);
      await t.rt.ds.destroy();
      const e = await scrape(metrics);
      assert.equal(sample(e, 'keywarden_audit_chain_length'), undefined);
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 1);
      assert.equal(sample(e, 'keywarden_active_key_age_seconds', 'alpha'), 0);
    });
  });

  describe('GET /metrics of a single process', () => {
    let t: TestRuntime;
    let app: FastifyInstance;

    before(async () => {
      t = await startTestRuntime([{ name: 'alpha' }]);
      const metrics = new LifecycleMetrics(t.kw);
      await new Scheduler(t.kw, metrics.schedulerHooks(), { jobs: [] }).runScope('alpha');
      app = createHttpServer(t.kw, {
        publicBaseUrl: 'http://127.0.0.1',
        metricsRegistries: [metrics.registry],
      });
      await app.ready();
    });
    after(async () => {
      await app?.close();
      await t?.close();
    });

    it('serves the token service, lifecycle and process metrics as one valid exposition', async () => {
      const r = await app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(r.statusCode, 200);
      assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      const e = parseExposition(r.body);
      assert.equal(e.types.get('keywarden_sign_requests_total'), 'counter');
      assert.equal(sample(e, 'keywarden_scope_has_active_key', 'alpha'), 1);
      assert.equal(sample(e, 'keywarden_published_keys', 'alpha'), 1);
      assert.ok((sample(e, 'process_resident_memory_bytes') ?? 0) > 0);
      assert.ok(sample(e, 'process_cpu_user_seconds_total') !== undefined);
    });
  });
});
