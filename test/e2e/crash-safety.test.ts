/**
 * Crash safety of rotation (DESIGN.md §4, docs/rotation.md): a real `keywarden serve` is
 * SIGKILLed at each step of making a key (through the test-only KEYWARDEN_TEST_CRASH_AT hook in
 * generate-key.ts), then restarted. The store and the token must end consistent: exactly one
 * active key, no row stuck `generating`, no backend object without a row; a leftover is completed
 * only when its key was sealed over it, otherwise it is removed with its object. And objects that
 * nobody can account for are reported, never deleted.
 */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { findOrphans } from '../../src/lifecycle/find-orphans';
import { reconcileAll, reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { openRuntime, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import type { KeyRecord } from '../../src/policy/key';
import { effectiveState } from '../../src/policy/key-state';
import { pickSigningKey } from '../../src/policy/next-actions';
import type { KeywardenConfig } from '../../src/policy/scope';
import { timelineForNewKey } from '../../src/policy/timeline';
import { validateConfig } from '../../src/config/validate-config';
import { Scheduler } from '../../src/scheduler/scheduler';
import { startServe, type ServeProcess } from '../helpers/daemon';
import { leaveKeyBehind } from '../helpers/leftover-key';
import { MemoryAuditLog } from '../helpers/fakes';
import { SECONDS_POLICY, testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const run = promisify(execFile);
const silent = pino({ level: 'silent' });
const SCOPE = 'crash';
const POINTS = ['before-backend', 'after-backend', 'after-seal', 'before-complete'] as const;
/** Points before the key is sealed: its leftover is removed (object and row), never completed. */
const UNSEALED_POINTS: readonly Point[] = ['before-backend', 'after-backend'];
type Point = (typeof POINTS)[number];

interface Scenario {
  point: Point;
  tokenLabel: string;
  config: KeywardenConfig;
  configPath: string;
  crash?: { code: number | null; signal: NodeJS.Signals | null };
  /** Store and token right after the crash, before the restart. */
  afterCrash?: { generating: KeyRecord[]; objectExists: boolean[] };
  /** An object planted before the restart with no row: must be reported, not deleted. */
  planted?: { keyId: string; ref: KeyRecord['backendRef'] };
  restartOutput?: string;
  /** Instants while the restarted daemon was up (healthy, and just before it was stopped). */
  upAt?: Date[];
}

describe('crash safety (e2e: keywarden serve SIGKILLed at each step of a rotation)', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  const scenarios: Scenario[] = [];
  const procs: ServeProcess[] = [];

  /** All scenarios share one SoftHSM2 config (one module env per test process), one token each. */
  async function addToken(label: string): Promise<void> {
    await run(
      'softhsm2-util',
      ['--init-token', '--free', '--label', label, '--pin', token.pin, '--so-pin', token.soPin],
      { env: { ...process.env, ...token.env } },
    );
  }

  function configFor(label: string): Record<string, unknown> {
    return testConfigDocument(
      { ...token, tokenLabel: label },
      [
        {
          name: SCOPE,
          schedule: '* * * * * *',
          policy: SECONDS_POLICY,
        },
      ],
      {
        store: { url: `sqlite:${join(token.dir, `${label}.db`)}` },
        logLevel: 'warn',
        // The scenarios run side by side in one directory: one admin socket each.
        admin: { socket: { path: `${label}.sock`, group: null } },
      },
    );
  }

  async function withRuntime<T>(config: KeywardenConfig, fn: (rt: Runtime) => Promise<T>): Promise<T> {
    const rt = await openRuntime(config, { log: silent });
    try {
      return await fn(rt);
    } finally {
      await rt.close();
    }
  }

  async function runScenario(s: Scenario): Promise<void> {
    // `init`: the first key. The daemon's first rotation is due a second later.
    await withRuntime(s.config, async (rt) => {
      assert.ok((await reconcileAll(rt.ctx, 'test')).every((r) => r.errors.length === 0));
    });
    const crashing = await startServe(s.configPath, {
      env: { KEYWARDEN_TEST_CRASH_AT: s.point, KEYWARDEN_TEST_CRASH_SCOPE: SCOPE },
      waitHealthy: false,
      args: ['--workers', '1'],
    });
    procs.push(crashing);
    const timeout = setTimeout(() => void crashing.kill(), 60_000);
    s.crash = await crashing.exited;
    clearTimeout(timeout);
    await withRuntime(s.config, async (rt) => {
      const generating = (await rt.ctx.keys.listByScope(SCOPE)).filter((k) => k.status === 'generating');
      const backend = await rt.ctx.backend('hsm');
      s.afterCrash = {
        generating,
        objectExists: await Promise.all(generating.map((k) => backend.exists(k.backendRef))),
      };
      // An object with keywarden's label and no row, as a restored old backup would leave.
      const keyId = randomUUID();
      const ref = backend.planKey({ scope: SCOPE, keyId });
      const now = new Date();
      await backend.generate(ref, { alg: 'ES256', scope: SCOPE, keyId, notBefore: now, notAfter: now });
      s.planted = { keyId, ref };
    });
    const restarted = await startServe(s.configPath, { args: ['--workers', '1'] });
    procs.push(restarted);
    s.upAt = [new Date()];
    // Healthy means the start-up reconcile ran; give the background orphan scan a moment.
    const deadline = Date.now() + 20_000;
    while (!restarted.output().includes(s.planted!.keyId) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    s.upAt.push(new Date());
    await restarted.stop();
    s.restartOutput = restarted.output();
  }

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    for (const point of POINTS) {
      const tokenLabel = `${token.tokenLabel}-${point}`.slice(0, 32);
      await addToken(tokenLabel);
      const doc = configFor(tokenLabel);
      const configPath = join(token.dir, `${point}.yaml`);
      await writeFile(configPath, JSON.stringify(doc, null, 2), { mode: 0o600 });
      const config = validateConfig(doc, { source: configPath, baseDir: token.dir });
      scenarios.push({ point, tokenLabel, config, configPath });
    }
    // The three scenarios are independent (own token, own store): run them side by side.
    await Promise.all(scenarios.map(runScenario));
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    await token?.cleanup();
  });

  for (const point of POINTS) {
    describe(`killed ${point}`, () => {
      const s = () => scenarios.find((x) => x.point === point)!;

      it('the hook killed the daemon at exactly that step', () => {
        assert.equal(s().crash?.signal, 'SIGKILL', `daemon exited ${JSON.stringify(s().crash)}`);
        const { generating, objectExists } = s().afterCrash!;
        // One row left `generating` in every case: in before-complete the completing
        // transaction was rolled back by the crash.
        assert.equal(generating.length, 1);
        assert.deepEqual(objectExists, [point !== 'before-backend']);
      });

      it('after a restart: exactly one active key, nothing generating, every object has a row', async () => {
        await withRuntime(s().config, async (rt) => {
          const keys = await rt.ctx.keys.listByScope(SCOPE);
          assert.deepEqual(
            keys.filter((k) => k.status === 'generating').map((k) => k.id),
            [],
            'a row is stuck in generating',
          );
          // Never two keys for one rotation: no instant at which two keys sign.
          const signing = keys
            .filter((k) => k.status === 'ready' && (k.revokedAt === null || k.revokedAt > k.activateAt))
            .sort((x, y) => x.activateAt.getTime() - y.activateAt.getTime());
          for (let i = 1; i < signing.length; i++) {
            assert.ok(signing[i]!.activateAt >= signing[i - 1]!.retireAt, `keys ${i - 1} and ${i} overlap`);
          }
          // Judged while the daemon ran: once stopped, nothing rotates these 3-second keys.
          for (const at of s().upAt!) {
            const active = keys.filter((k) => k.status === 'ready' && effectiveState(k, at) === 'active');
            assert.equal(active.length, 1, `${active.length} active keys at ${at.toISOString()}`);
          }
          const left = s().afterCrash!.generating[0]!;
          const resolved = keys.find((k) => k.id === left.id);
          if (UNSEALED_POINTS.includes(point)) {
            assert.equal(resolved, undefined, 'a leftover without a sealed key is removed');
            assert.equal(
              await (await rt.ctx.backend('hsm')).exists(left.backendRef),
              false,
              'and its object',
            );
          } else
            assert.equal(resolved?.status, 'ready', 'a leftover whose key is sealed over it is completed');
          const ids = new Set(keys.map((k) => k.id));
          const backend = await rt.ctx.backend('hsm');
          const objects = await backend.list();
          const unaccounted = objects.filter((o) => !ids.has(o.keyId ?? ''));
          // The only object without a row is the one planted on purpose, and it is still there.
          assert.deepEqual([...new Set(unaccounted.map((o) => o.keyId))], [s().planted!.keyId]);
          assert.ok(await backend.exists(s().planted!.ref), 'an orphan was deleted');
        });
      });

      it('the restarted daemon reported the planted orphan at start-up', () => {
        const out = s().restartOutput ?? '';
        const lines = out
          .split('\n')
          .filter((l) => l.includes(s().planted!.keyId))
          .map((l) => JSON.parse(l) as { msg: string; level: number });
        assert.ok(
          lines.some((l) => /orphan/.test(l.msg) && l.level === 40),
          `no orphan warning in the daemon output:\n${out}`,
        );
      });
    });
  }

  describe('reconcile after a crash (in process, fake clock)', () => {
    let rt: Runtime;
    let clock: FakeClock;

    before(async () => {
      const label = `${token.tokenLabel}-resolve`.slice(0, 32);
      await addToken(label);
      const config = validateConfig(configFor(label), { source: '<resolve>', baseDir: token.dir });
      clock = new FakeClock(Date.UTC(2026, 0, 1));
      rt = await openRuntime(config, { log: silent, clock });
      await reconcileAll(rt.ctx, 'test');
    });
    after(async () => rt?.close());

    /** A row left `generating` for the successor of the current key, as a crash leaves it. */
    async function leftover(withObject: boolean): Promise<KeyRecord> {
      const scope = rt.ctx.config.scopes[0]!;
      const keys = (await rt.ctx.keys.listByScope(SCOPE)).filter((k) => k.status === 'ready');
      const current = pickSigningKey(keys, clock.now())!;
      // Rotation is due: a daemon was making the successor when it died.
      clock.set(current.retireAt.getTime() - 1000);
      const backend = await rt.ctx.backend('hsm');
      const id = randomUUID();
      const row: KeyRecord = {
        id,
        kid: null,
        scope: SCOPE,
        alg: 'ES256',
        status: 'generating',
        backendRef: backend.planKey({ scope: SCOPE, keyId: id }),
        publicJwk: null,
        ...timelineForNewKey(scope.policy, clock.now(), { immediate: false, successorOf: current }),
        revokedAt: null,
        revokedReason: null,
        destroyedAt: null,
        createdAt: clock.now(),
        createdBy: 'crashed-daemon',
      };
      await rt.ctx.keys.insertGenerating(row, clock.now());
      if (withObject) await leaveKeyBehind(backend, row, 'sealed');
      return row;
    }

    it('a completed leftover is the successor: the same pass creates no second one', async () => {
      const row = await leftover(true);
      const report = await reconcileScope(rt.ctx, SCOPE);
      assert.deepEqual(
        report.done.map((d) => [d.action, d.detail]),
        [['resolve-generating', 'completed']],
      );
      const keys = (await rt.ctx.keys.listByScope(SCOPE)).filter((k) => k.status === 'ready');
      assert.equal(keys.filter((k) => k.activateAt.getTime() === row.activateAt.getTime()).length, 1);
      clock.set(row.activateAt);
      assert.equal(pickSigningKey(keys, clock.now())?.id, row.id);
    });

    it('a removed leftover is replaced in the same pass, once', async () => {
      const row = await leftover(false);
      const report = await reconcileScope(rt.ctx, SCOPE);
      assert.deepEqual(
        report.done.map((d) => [d.action, d.detail]),
        [
          ['resolve-generating', 'removed'],
          ['create', 'rotation-due'],
        ],
      );
      const keys = (await rt.ctx.keys.listByScope(SCOPE)).filter((k) => k.status === 'ready');
      assert.equal(await rt.ctx.keys.findById(row.id), null);
      assert.equal(keys.filter((k) => k.activateAt.getTime() === row.activateAt.getTime()).length, 1);
    });
  });

  describe('findOrphans (in process)', () => {
    let rt: Runtime;
    let audit: MemoryAuditLog;

    before(async () => {
      const label = `${token.tokenLabel}-orphans`.slice(0, 32);
      await addToken(label);
      const config = validateConfig(configFor(label), { source: '<orphans>', baseDir: token.dir });
      audit = new MemoryAuditLog();
      rt = await openRuntime(config, { log: silent, audit: () => audit });
      await reconcileAll(rt.ctx, 'test');
    });
    after(async () => rt?.close());

    it('reports an object without a row once per process (warning + audit record), never deletes it, and ignores objects with rows', async () => {
      const backend = await rt.ctx.backend('hsm');
      const keyId = randomUUID();
      const ref = backend.planKey({ scope: SCOPE, keyId });
      const now = new Date();
      await backend.generate(ref, { alg: 'ES256', scope: SCOPE, keyId, notBefore: now, notAfter: now });
      const reported = new Set<string>();
      const [first] = await findOrphans(rt.ctx, { reported });
      assert.equal(first?.backend, 'hsm');
      assert.deepEqual(first!.orphans.map((o) => [o.keyId, o.kind]).sort(), [
        [keyId, 'private'],
        [keyId, 'public'],
      ]);
      assert.equal(first!.newlyReported, 2);
      const events = audit.events.filter((e) => e.type === 'backend.orphan-found');
      assert.equal(events.length, 2);
      assert.ok(
        events.every((e) => e.scope === SCOPE && e.data?.keyId === keyId && e.data?.backend === 'hsm'),
      );
      // Hourly scans: still counted, not reported again.
      const [second] = await findOrphans(rt.ctx, { reported });
      assert.equal(second!.orphans.length, 2);
      assert.equal(second!.newlyReported, 0);
      assert.equal(audit.events.filter((e) => e.type === 'backend.orphan-found').length, 2);
      assert.ok(await backend.exists(ref), 'reported, never deleted');
      // Keys with rows, including one still `generating`, are not orphans.
      const keyIds = new Set((await rt.ctx.keys.listAll()).map((k) => k.id));
      assert.ok(keyIds.size >= 1);
      for (const o of second!.orphans) assert.ok(!keyIds.has(o.keyId!));
      await backend.destroy(ref);
      const [third] = await findOrphans(rt.ctx, { reported });
      assert.deepEqual(third!.orphans, []);
    });

    it('the scheduler scans at start and then on its interval, per backend', async () => {
      const scans: { backend: string; orphans: number }[] = [];
      const jobs = rt.keywarden.periodicJobs({
        onOrphanScan: (r) => scans.push({ backend: r.backend, orphans: r.orphans.length }),
        orphanScanIntervalMs: 300,
      });
      const scheduler = new Scheduler(rt.keywarden, {}, { jobs });
      await scheduler.start();
      await new Promise((r) => setTimeout(r, 1000));
      await scheduler.stop();
      assert.ok(scans.length >= 3, `${scans.length} scans`);
      assert.ok(scans.every((s) => s.backend === 'hsm' && s.orphans === 0));
    });
  });
});
