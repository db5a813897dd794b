/**
 * Several keywarden daemons on one PostgreSQL database and one HSM token (docs/ha.md):
 * in-process runtimes reconciling concurrently through many rotations, then real `serve`
 * processes: one is SIGKILLed while it holds the scope lock, and a CLI revocation must reach
 * every survivor's JWKS within the documented bound.
 */
import * as assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { Client } from 'pg';
import type { GenerateKeyRequest, KeyBackend } from '../../src/backends/key-backend';
import { openBackend } from '../../src/backends/registry';
import type { KeyChangeListener } from '../../src/store/key-change-notifier';
import { loadConfig } from '../../src/config/load-config';
import { reconcileAll, reconcileScope, type ReconcileReport } from '../../src/lifecycle/reconcile-scope';
import { revokeKey } from '../../src/lifecycle/revoke-key';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import type { KeyRecord } from '../../src/policy/key';
import { effectiveState } from '../../src/policy/key-state';
import { pickSigningKey } from '../../src/policy/next-actions';
import { validateConfig } from '../../src/config/validate-config';
import { advisoryKey } from '../../src/store/scope-lock';
import { runKeywarden } from '../helpers/cli';
import { startServe, type ServeProcess } from '../helpers/daemon';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const silent = pino({ level: 'silent' });

/** Ready keys of a scope ordered by activation. */
function chain(keys: KeyRecord[], scope: string): KeyRecord[] {
  return keys
    .filter((k) => k.scope === scope && k.status === 'ready')
    .sort((a, b) => a.activateAt.getTime() - b.activateAt.getTime());
}

/** Exactly one key per rotation: no two keys ever sign over the same instant. */
function assertNoOverlap(all: KeyRecord[]): void {
  // A key revoked before it activated never signed.
  const keys = all.filter((k) => k.revokedAt === null || k.revokedAt > k.activateAt);
  for (let i = 1; i < keys.length; i++) {
    const prev = keys[i - 1]!;
    const k = keys[i]!;
    const prevEnd = Math.min(prev.retireAt.getTime(), prev.revokedAt?.getTime() ?? Infinity);
    const show = (x: KeyRecord) =>
      `${x.kid} created ${x.createdAt.toISOString()} by ${x.createdBy}, active ${x.activateAt.toISOString()}` +
      `..${x.retireAt.toISOString()}${x.revokedAt ? `, revoked ${x.revokedAt.toISOString()}` : ''}`;
    assert.ok(
      k.activateAt.getTime() >= prevEnd,
      `two keys active at ${k.activateAt.toISOString()} (two keys for one rotation):\n  ${show(prev)}\n  ${show(k)}`,
    );
  }
}

describe('HA: several daemons on one PostgreSQL database', function () {
  this.timeout(120_000);
  let pg: TestPostgres;
  let token: SoftHsmToken;

  before(async () => {
    [pg, token] = await Promise.all([startPostgres(), createSoftHsmToken()]);
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
  });
  after(async () => {
    await pg?.stop();
    await token?.cleanup();
  });

  describe('in process: three runtimes, one clock, one token, reconciling concurrently', () => {
    const scopes = ['consumer', 'enterprise'];
    let rts: Runtime[] = [];
    let clock: FakeClock;
    const inGenerate = new Map<string, number>();
    let maxInGenerate = 0;
    let generatingRowsSeen = 0;
    let probe: Client;

    before(async () => {
      const url = await pg.createDatabase('ha_inproc');
      const doc = testConfigDocument(
        token,
        scopes.map((name) => ({ name })),
        // Polling every 60 s: anything faster than that below comes from LISTEN/NOTIFY.
        { store: { url }, server: { keyRefreshSeconds: 60 } },
      );
      const config = validateConfig(doc, { source: '<ha>', baseDir: token.dir });
      clock = new FakeClock(Date.UTC(2026, 0, 1));
      probe = new Client({ connectionString: url });
      await probe.connect();
      // Every runtime's backend counts generations in flight and the `generating` rows present
      // while one runs: the scope lock must make both at most one per scope.
      const counting = async (cfg: Parameters<typeof openBackend>[0]): Promise<KeyBackend> => {
        const b = await openBackend(cfg);
        const generate = b.generate.bind(b);
        b.generate = async (ref, req: GenerateKeyRequest) => {
          const n = (inGenerate.get(req.scope) ?? 0) + 1;
          inGenerate.set(req.scope, n);
          maxInGenerate = Math.max(maxInGenerate, n);
          try {
            const r = await probe.query<{ n: string }>(
              "SELECT COUNT(*) AS n FROM keys WHERE status = 'generating' AND scope = $1",
              [req.scope],
            );
            generatingRowsSeen = Math.max(generatingRowsSeen, Number(r.rows[0]?.n));
            return await generate(ref, req);
          } finally {
            inGenerate.set(req.scope, (inGenerate.get(req.scope) ?? 1) - 1);
          }
        };
        return b;
      };
      // Sequential opens: the first one runs the migrations.
      for (let i = 0; i < 3; i++) {
        rts.push(await openRuntime(config, { log: silent, clock, openBackend: counting }));
      }
    });
    after(async () => {
      for (const rt of rts) await rt.close();
      rts = [];
      await probe?.end();
    });

    it('creates exactly one key per rotation over 12 rotations per scope, never two generating at once', async () => {
      const ctx0 = rts[0]!.ctx;
      const activeForMs = 10 * 60_000; // SHORT_POLICY
      const end = clock.now().getTime() + 12 * activeForMs;
      const creates = new Map<string, number>(scopes.map((s) => [s, 0]));
      let steps = 0;
      while (clock.now().getTime() < end) {
        const reports: ReconcileReport[] = await Promise.all(
          rts.flatMap((rt) => scopes.map((s) => reconcileScope(rt.ctx, s))),
        );
        for (const r of reports) {
          assert.deepEqual(r.errors, [], JSON.stringify(r));
          creates.set(r.scope, creates.get(r.scope)! + r.done.filter((d) => d.action === 'create').length);
        }
        for (const s of scopes) {
          const perScope = reports.filter((r) => r.scope === s && r.done.some((d) => d.action === 'create'));
          assert.ok(perScope.length <= 1, `two daemons created a key for ${s} in one step`);
          const keys = chain(await ctx0.keys.listAll(), s);
          assert.ok(
            pickSigningKey(keys, clock.now()),
            `${s}: no signing key at ${clock.now().toISOString()}`,
          );
        }
        // 97 s: a step that is never aligned with a rotation, so successors are created late.
        clock.advanceSeconds(97);
        steps++;
      }
      const all = await ctx0.keys.listAll();
      assert.equal(all.filter((k) => k.status === 'generating').length, 0);
      for (const s of scopes) {
        const keys = chain(all, s);
        assert.ok(keys.length >= 12, `${s}: ${keys.length} keys`);
        assert.equal(keys.length, creates.get(s), `${s}: every row was reported created exactly once`);
        assertNoOverlap(keys);
        // Successors take over exactly at their predecessor's retirement, even when made late.
        for (let i = 1; i < keys.length; i++) {
          assert.equal(
            keys[i]!.activateAt.getTime(),
            keys[i - 1]!.retireAt.getTime(),
            `${s}: gap before key ${i}`,
          );
        }
        assert.ok(keys.filter((k) => k.destroyedAt !== null).length >= 9, 'expired objects destroyed');
      }
      assert.equal(maxInGenerate, 1, 'two generations of one scope ran at once');
      assert.equal(generatingRowsSeen, 1, 'more than one generating row while generating');
      assert.ok(steps > 70);
    });

    it('a revocation on one runtime reaches the others by LISTEN/NOTIFY in well under the poll interval, also after the listen connection was killed', async () => {
      const [a, b, c] = rts.map((rt) => rt.ctx);
      b!.cache.start();
      c!.cache.start();
      // The composition root builds the feed on PostgreSQL: its listener.
      const listener = (ctx: typeof a) => ctx!.cache.activeFeed as KeyChangeListener | null;
      try {
        const deadline = Date.now() + 5000;
        while (!(listener(b)?.listening && listener(c)?.listening)) {
          assert.ok(Date.now() < deadline, 'listeners did not connect');
          await sleep(20);
        }
        // Kill b's LISTEN session: it must reconnect and keep receiving.
        const pid = await listener(b)!.backendPid();
        await rts[0]!.ds.query('SELECT pg_terminate_backend($1)', [pid]);
        while (listener(b)!.connects < 2) {
          assert.ok(Date.now() < deadline, 'listener did not reconnect');
          await sleep(20);
        }
        const published = (ctx: typeof a) =>
          JSON.parse(ctx!.cache.jwks(ctx!.cache.view('consumer')!, clock.now()).body).keys.map(
            (k: { kid: string }) => k.kid,
          ) as string[];
        const victim = pickSigningKey(chain(await a!.keys.listAll(), 'consumer'), clock.now())!;
        await b!.cache.refresh(true);
        await c!.cache.refresh(true);
        assert.ok(
          published(b).includes(victim.kid!) && published(c).includes(victim.kid!),
          JSON.stringify({ victim: victim.kid, b: published(b), c: published(c) }),
        );
        const t0 = Date.now();
        const r = await revokeKey(a!, victim.kid!, 'test: HA propagation', 'test');
        assert.ok(r.replacement, 'the only active key was revoked: a replacement signs at once');
        // The revocation and the replacement are two commits: wait for the state after both.
        const settled = (ctx: typeof a) =>
          !published(ctx).includes(victim.kid!) && published(ctx).includes(r.replacement!.kid!);
        while (!settled(b) || !settled(c)) {
          assert.ok(Date.now() - t0 < 2000, 'revocation not propagated within 2 s (poll interval is 60 s)');
          await sleep(5);
        }
        assert.equal(effectiveState(r.revoked, clock.now()), 'revoked');
        assert.ok(listener(b)!.notifications > 0);
      } finally {
        b!.cache.stop();
        c!.cache.stop();
      }
    });
  });

  describe('processes: three `keywarden serve` daemons', () => {
    const SCOPE = 'ha';
    let configPath: string;
    let dbUrl: string;
    let daemons: ServeProcess[] = [];
    let probe: Client;

    const cli = (args: string[]) =>
      runKeywarden(['-c', configPath, '--local', ...args], { env: { KEYWARDEN_TEST_FROM_SOURCE: '1' } });
    const jwksKids = async (d: ServeProcess): Promise<string[]> => {
      const r = await fetch(`${d.baseUrl}/scopes/${SCOPE}/.well-known/jwks.json`);
      assert.equal(r.status, 200);
      return ((await r.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    };
    const rows = async (): Promise<KeyRecord[]> => {
      const r = await probe.query<{
        id: string;
        kid: string | null;
        status: string;
        publish_at: string;
        activate_at: string;
        retire_at: string;
        expires_at: string;
        revoked_at: string | null;
        created_at: string;
        created_by: string;
      }>(
        `SELECT id, kid, status, publish_at, activate_at, retire_at, expires_at, revoked_at, created_at,
                created_by
           FROM keys WHERE scope = $1`,
        [SCOPE],
      );
      return r.rows.map(
        (x) =>
          ({
            id: x.id,
            kid: x.kid,
            scope: SCOPE,
            status: x.status,
            publishAt: new Date(Number(x.publish_at)),
            activateAt: new Date(Number(x.activate_at)),
            retireAt: new Date(Number(x.retire_at)),
            expiresAt: new Date(Number(x.expires_at)),
            revokedAt: x.revoked_at === null ? null : new Date(Number(x.revoked_at)),
            createdAt: new Date(Number(x.created_at)),
            createdBy: x.created_by,
          }) as KeyRecord,
      );
    };

    before(async () => {
      dbUrl = await pg.createDatabase('ha_procs');
      const doc = testConfigDocument(
        token,
        [
          {
            name: SCOPE,
            schedule: '* * * * * *',
            policy: {
              jwksMaxAge: '1s',
              prepublish: '2s',
              activeFor: '4s',
              verifyGrace: '2s',
              maxTokenTtl: '2s',
              destroyAfter: '3s',
              maxKeyLifetime: '1m',
            },
          },
        ],
        { store: { url: dbUrl }, logLevel: 'warn', server: { keyRefreshSeconds: 2 } },
      );
      configPath = join(token.dir, 'ha.yaml');
      await writeFile(configPath, JSON.stringify(doc, null, 2), { mode: 0o600 });
      // What `keywarden init` does (migrations, first key), in this process to save a CLI start.
      const config = loadConfig(configPath);
      const rt = await openRuntime(config, { log: silent, audit: storeAuditLog() });
      try {
        assert.ok((await reconcileAll(rt.ctx, 'test')).every((r) => r.errors.length === 0));
      } finally {
        await rt.close();
      }
      probe = new Client({ connectionString: dbUrl });
      await probe.connect();
      daemons = await Promise.all(
        [1, 2, 3].map((i) =>
          startServe(configPath, {
            env: {
              KEYWARDEN_STORE_URL: `${dbUrl}?application_name=kw-daemon-${i}`,
              // Three daemons on one host and one config: an admin socket each.
              KEYWARDEN_ADMIN_SOCKET: join(token.dir, `admin-${i}.sock`),
            },
            args: ['--workers', '1'], // one process per daemon: three daemons, not nine processes
          }),
        ),
      );
    });
    after(async () => {
      await Promise.all(daemons.map((d) => d.stop()));
      await probe?.end();
    });

    it('`keys revoke` from the CLI drops the kid from all three daemons within the documented bound (< 3 s)', async () => {
      assert.equal(daemons.length, 3);
      // The newest key: published (pending or active) with the most life left. Keys live ~8 s
      // here; on a loaded machine the CLI can take long enough for the chosen key to expire
      // first (the CLI then refuses, KEY_NOT_USABLE): pick the newest again and retry.
      let target: KeyRecord | undefined;
      let gone: Map<ServeProcess, number>;
      let polling = false;
      let watchers: Promise<void>[];
      for (let attempt = 1; ; attempt++) {
        const ready = chain(await rows(), SCOPE).filter((k) => k.revokedAt === null);
        const candidate = ready[ready.length - 1]!;
        // It may have been created a moment ago: every daemon publishes it within the bound too.
        const seenBy = async () =>
          (await Promise.all(daemons.map(jwksKids))).every((k) => k.includes(candidate.kid!));
        const t0 = Date.now();
        while (!(await seenBy())) {
          assert.ok(Date.now() - t0 < 3000, 'a new key did not reach every daemon within 3 s');
          await sleep(20);
        }
        const seen = new Map<ServeProcess, number>();
        polling = true;
        watchers = daemons.map(async (d) => {
          while (polling && !seen.has(d)) {
            if (!(await jwksKids(d)).includes(candidate.kid!)) seen.set(d, Date.now());
            else await sleep(10);
          }
        });
        const r = await cli([
          'keys',
          'revoke',
          '--reason',
          'test: HA revocation',
          '--json',
          '--',
          candidate.kid!,
        ]);
        if (r.code === 0) {
          target = candidate;
          gone = seen;
          break;
        }
        polling = false;
        await Promise.all(watchers);
        assert.ok(attempt < 3 && /already expired/.test(r.stderr), `revoke failed (${r.code}): ${r.stderr}`);
      }
      const revokedAt = (await rows()).find((k) => k.id === target!.id)!.revokedAt!;
      assert.ok(revokedAt);
      const waitUntil = Date.now() + 5000;
      while (gone.size < daemons.length && Date.now() < waitUntil) await sleep(20);
      polling = false;
      await Promise.all(watchers);
      assert.equal(gone.size, daemons.length, 'some daemon still publishes the revoked kid');
      const lags = [...gone.values()].map((t) => t - revokedAt.getTime());
      console.log(`      revocation reached every daemon after ${lags.map((l) => `${l} ms`).join(', ')}`);
      for (const lag of lags) assert.ok(lag < 3000, `revocation took ${lag} ms to reach a daemon`);
    });

    it('a daemon SIGKILLed while it holds the scope lock: the lock is freed and another daemon carries on rotating', async () => {
      const key = BigInt.asUintN(64, BigInt(advisoryKey(SCOPE)));
      // Find a daemon holding the scope's advisory lock, preferably while a key is being made.
      let victim: ServeProcess | undefined;
      let whileGenerating = false;
      const deadline = Date.now() + 20_000;
      while (!victim && Date.now() < deadline) {
        const r = await probe.query<{ app: string; generating: boolean }>(
          `SELECT a.application_name AS app,
                  EXISTS (SELECT 1 FROM keys WHERE status = 'generating') AS generating
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.classid::bigint = $1 AND l.objid::bigint = $2`,
          [(key >> 32n).toString(), (key & 0xffffffffn).toString()],
        );
        const row = r.rows[0];
        const n = row ? Number(/^kw-daemon-(\d)$/.exec(row.app)?.[1]) : NaN;
        if (row && n >= 1 && (row.generating || Date.now() > deadline - 12_000)) {
          victim = daemons[n - 1];
          whileGenerating = row.generating;
        } else await sleep(2);
      }
      assert.ok(victim, 'never saw a daemon holding the scope lock');
      const killedAt = Date.now();
      const exit = await victim.kill('SIGKILL');
      assert.equal(exit.signal, 'SIGKILL');
      const survivors = daemons.filter((d) => d !== victim);
      daemons = survivors;
      const before = (await rows()).filter((k) => k.status === 'ready').length;

      // Rotations continue: at least two more keys within ~3 rotations, nothing left generating.
      let after: KeyRecord[] = [];
      while (Date.now() - killedAt < 15_000) {
        await sleep(500);
        after = await rows();
        if (after.filter((k) => k.status === 'ready').length >= before + 2) break;
      }
      assert.ok(
        after.filter((k) => k.status === 'ready').length >= before + 2,
        `rotations stopped after the kill (whileGenerating=${whileGenerating})`,
      );
      await sleep(1200); // a leftover `generating` row is resolved by the next reconcile
      const final = await rows();
      assert.deepEqual(
        final.filter((k) => k.status === 'generating' && Date.now() - k.createdAt.getTime() > 1000),
        [],
        'a generating row was left behind',
      );
      // Among the keys rotation made: the revocation above may legitimately leave its immediate
      // replacement active next to a successor that was already pending (the latest signs).
      assertNoOverlap(chain(final, SCOPE).filter((k) => k.createdBy === 'scheduler'));
      // Both survivors serve the current signing key.
      const signing = pickSigningKey(chain(final, SCOPE), new Date());
      assert.ok(signing);
      for (const d of survivors) assert.ok((await jwksKids(d)).includes(signing.kid!), d.output());
    });
  });
});
