/**
 * Trust lives in the HSM, for API clients too (docs/api.md#api-clients-and-authentication): an
 * attacker who can write the store but not use the HSM edits the `clients` table with plain SQL.
 * No edit may make the sign or verify route answer anything but 401 for the attacker (and nothing
 * is signed); every edit is reported (error log line, `client.integrity-failed` audit record,
 * `clients list` trust). Legitimate clients keep working, across an audit key renewal and the old
 * key's destruction; a client made before sealing is refused until an operator seals it. On SQLite
 * and PostgreSQL, a real SoftHSM2 token, a fake clock.
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { AuditStore } from '../../src/audit/audit-store';
import { ClientAuthenticator } from '../../src/http/auth';
import { TokenServiceMetrics } from '../../src/http/metrics';
import { createServer } from '../../src/http/server';
import { routeTable } from '../../src/http/routes';
import { checkpointAudit } from '../../src/audit/checkpoint';
import { AUDIT_KEY_POLICY, AUDIT_SCOPE, signingAuditKey } from '../../src/policy/audit-key';
import { maintainClientSeals, sealingAuditKey } from '../../src/lifecycle/client-seals';
import { addClient, checkClientSecret, listClients, rotateClientSecret } from '../../src/lifecycle/clients';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { sealClients } from '../../src/lifecycle/seal-clients';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import { decodeClientSeal, type ClientRefusalReason } from '../../src/policy/client-seal';
import { FakeClock } from '../../src/policy/clock';
import { hasCode } from '../../src/policy/errors';
import type { KeyRecord } from '../../src/policy/key';
import type { KeywardenConfig } from '../../src/policy/scope';
import { timelineForNewKey } from '../../src/policy/timeline';
import { ClientRepository } from '../../src/store/client-repository';
import {
  attackerClientRow,
  attackerSeal,
  attackerSecret,
  clientWriter,
  type ClientWriter,
} from '../helpers/client-tamper';
import { captureLog } from '../helpers/capture-log';
import { makeUnsealedKey } from '../helpers/leftover-key';
import { bothStores } from '../helpers/postgres';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';
import { attackerKeyRow, storeWriter } from '../helpers/store-tamper';

const { stores: STORES, stop: stopPostgres } = bothStores('clientseal');
const SCOPES = [{ name: 'alpha' }, { name: 'beta' }];
const T0 = Date.UTC(2026, 5, 1, 12, 0, 0);
const DAY = 86400;
const BEFORE_CLIENT_SEAL = MIGRATIONS.filter((m) => m.name !== 'ClientSeal1764300000000');

describe('API client integrity: a store write never makes a client', function () {
  this.timeout(180_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(`on ${store.name}`, () => {
      let t: TestRuntime;
      let logs: ReturnType<typeof captureLog>;
      let sql: ClientWriter;
      let app: FastifyInstance;
      let auth: ClientAuthenticator;
      let base: string;
      /** Signatures made with scope keys (not the audit key) since setup. */
      let tokenSignatures: number;
      const reopened: Runtime[] = [];

      async function setup(opts: { beforeOpen?: (dir: string, url: string) => Promise<void> } = {}) {
        logs = captureLog();
        const storeUrl = await store.url();
        t = await startTestRuntime(SCOPES, {
          clock: new FakeClock(T0),
          ...(storeUrl !== undefined ? { storeUrl } : {}),
          auditIntegrity: true,
          log: logs.log,
          ...(opts.beforeOpen
            ? {
                beforeOpen: (token) =>
                  opts.beforeOpen!(token.dir, storeUrl ?? `sqlite:${token.dir}/keywarden.db`),
              }
            : {}),
        });
        await reconcileAll(t.ctx, 'test');
        await t.ctx.cache.refresh(true);
        sql = clientWriter(t.rt.ds);
        const backend = await t.ctx.backend('hsm');
        const sign = backend.sign.bind(backend);
        tokenSignatures = 0;
        backend.sign = (ref, alg, input) => {
          if (!String(ref.ref.label ?? '').includes(`:${AUDIT_SCOPE}:`)) tokenSignatures += 1;
          return sign(ref, alg, input);
        };
        // The poll runs when the test says (auth.poll()), as a daemon's timer would.
        auth = new ClientAuthenticator(t.kw, { pollSeconds: 3600 });
        const tokenService = {
          kw: t.kw,
          auth,
          metrics: new TokenServiceMetrics(t.config),
          audit: { activity: t.kw.createSignActivity(), denied: t.kw.createDeniedRecorder() },
        };
        app = createServer(t.kw, {
          routes: routeTable({ kw: t.kw, publicBaseUrl: 'http://127.0.0.1', tokenService }),
        });
        await app.listen({ host: '127.0.0.1', port: 0 });
        base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      }
      afterEach(async () => {
        for (const rt of reopened.splice(0)) await rt.close();
        await app?.close();
        await t?.close();
      });

      const post = async (path: string, secret: string, body: unknown) => {
        const r = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> };
      };
      const sign = (scope: string, secret: string) =>
        post(`/v1/scopes/${scope}/sign`, secret, { claims: { aud: `${scope}-api`, sub: 'x' } });
      const verify = (scope: string, secret: string, token = 'e30.e30.sig') =>
        post(`/v1/scopes/${scope}/verify`, secret, { token, audience: `${scope}-api` });

      /** Another process on the same store and token: what a worker or a restart sees. */
      const restart = async (config: KeywardenConfig = t.config): Promise<Runtime> => {
        const rt = await openRuntime(config, {
          log: pino({ level: 'silent' }),
          clock: t.clock,
          audit: storeAuditLog(),
        });
        reopened.push(rt);
        return rt;
      };

      /** Sign and verify answer 401 for `secret` on every scope, nothing is signed, in this process and a fresh one. */
      async function assertRefused(secret: string) {
        await auth.poll();
        const before = tokenSignatures;
        for (const scope of ['alpha', 'beta']) {
          const s = await sign(scope, secret);
          assert.equal(s.status, 401, `sign on ${scope}: ${JSON.stringify(s.body)}`);
          assert.equal(s.body.token, undefined);
          assert.equal((await verify(scope, secret)).status, 401, `verify on ${scope}`);
        }
        assert.equal(tokenSignatures, before, 'a scope key signed something');
        assert.equal(
          await checkClientSecret((await restart()).ctx, secret),
          null,
          'a fresh process accepts it',
        );
      }

      /** The refusal is in an error log line and an audit record, and `clients list` shows it. */
      async function assertDetected(clientId: string, reason: ClientRefusalReason) {
        assert.ok(
          logs.lines().some((l) => l.level === 50 && l.clientId === clientId && l.reason === reason),
          `no error log line for ${clientId} ${reason}: ${JSON.stringify(logs.lines().filter((l) => l.clientId))}`,
        );
        const records = await new AuditStore(t.rt.ds).tail({ type: 'client.integrity-failed', limit: 100 });
        assert.ok(
          records.some((r) => r.data.clientId === clientId && r.data.reason === reason),
          `no client.integrity-failed record for ${clientId} ${reason}`,
        );
        const listed = (await listClients(t.ctx)).find((c) => c.id === clientId);
        assert.equal(listed?.trust, 'refused');
        assert.equal(listed.trust === 'refused' && listed.reason, reason);
      }

      it('a new client is sealed by the audit key and works; `clients list` says trusted', async () => {
        await setup();
        const c = await addClient(t.ctx, 'good', { alpha: ['sign', 'verify'] }, 'test');
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 200);
        assert.equal((await sign('beta', c.secret)).status, 403);
        const row = await sql.read(c.client.id);
        const auditKey = signingAuditKey(await t.ctx.keys.listByScope(AUDIT_SCOPE), t.clock.now());
        assert.equal(decodeClientSeal(row!.seal as string)?.kid, auditKey?.kid);
        const listed = await listClients(t.ctx);
        assert.deepEqual(
          listed.map((l) => [l.name, l.trust, l.trust === 'trusted' && l.sealedBy]),
          [['good', 'trusted', auditKey?.kid]],
        );
      });

      it('1. an inserted row with a known secret and sign grants: 401, nothing signed, reported', async () => {
        await setup();
        const { row, secret, id } = await attackerClientRow({
          alpha: ['sign', 'verify'],
          beta: ['sign', 'verify'],
        });
        await sql.insert(row);
        await assertRefused(secret);
        await assertDetected(id, 'unsealed');
        // The log line says what to do if the row is the operator's own.
        const line = logs.lines().find((l) => l.clientId === id && l.reason === 'unsealed')!;
        assert.match(String(line.todo), /keywarden clients seal mallory-/);
      });

      it('1b. an inserted row with a seal made by the attacker’s own key, claiming the audit key’s kid: 401', async () => {
        await setup();
        await addClient(t.ctx, 'good', { alpha: ['verify'] }, 'test');
        const auditKid = signingAuditKey(await t.ctx.keys.listByScope(AUDIT_SCOPE), t.clock.now())!.kid!;
        const made = await attackerClientRow({ alpha: ['sign'] });
        made.row.seal = attackerSeal(made.row, auditKid);
        await sql.insert(made.row);
        await assertRefused(made.secret);
        await assertDetected(made.id, 'seal-invalid');
      });

      it('1c. an inserted audit key row with the attacker’s public key, sealing an inserted client: 401', async () => {
        await setup();
        await addClient(t.ctx, 'good', { alpha: ['verify'] }, 'test');
        const auditKey = signingAuditKey(await t.ctx.keys.listByScope(AUDIT_SCOPE), t.clock.now())!;
        const fake = await attackerKeyRow(auditKey, AUDIT_SCOPE);
        // Activated later than the real one, so it is what a process would take as the signer.
        await storeWriter(t.rt.ds).insert({
          ...fake.row,
          activate_at: auditKey.activateAt.getTime() + 1000,
        });
        const made = await attackerClientRow({ alpha: ['sign'], beta: ['sign'] });
        made.row.seal = attackerSeal(made.row, fake.kid, fake.privateKey);
        await sql.insert(made.row);
        await assertRefused(made.secret);
        await assertDetected(made.id, 'seal-key-refused');
      });

      it('1d. an inserted audit key row pointing at a scope’s real key signs no checkpoint and seals no client; its expiry destroys nothing', async () => {
        await setup();
        await addClient(t.ctx, 'good', { alpha: ['verify'] }, 'test');
        const auditKey = signingAuditKey(await t.ctx.keys.listByScope(AUDIT_SCOPE), t.clock.now())!;
        const victim = signingAuditKey(await t.ctx.keys.listByScope('alpha'), t.clock.now())!;
        const backend = await t.ctx.backend('hsm');
        // An `_audit` row naming alpha's signing key object, activated after the real audit key.
        const copied = await attackerKeyRow(auditKey, AUDIT_SCOPE);
        await storeWriter(t.rt.ds).insert({
          ...copied.row,
          backend_ref: JSON.stringify(victim.backendRef),
          activate_at: auditKey.activateAt.getTime() + 1000,
        });
        t.clock.advanceSeconds(2);
        await t.ctx.audit.record({ type: 'client.created', actor: 'test', data: {} });
        await assert.rejects(checkpointAudit(t.ctx, { force: true }), (e) => hasCode(e, 'KEY_NOT_USABLE'));
        await assert.rejects(addClient(t.ctx, 'never', { alpha: ['sign'] }, 'test'), (e) =>
          hasCode(e, 'KEY_NOT_USABLE'),
        );
        assert.equal(tokenSignatures, 0, 'a scope key signed an audit statement');
        // Long after the copy's destroy time, the retired-key cleanup still leaves alpha's key alone.
        await storeWriter(t.rt.ds).remove(copied.row.id as string);
        t.clock.advanceSeconds(200 * DAY);
        await storeWriter(t.rt.ds).insert({
          ...copied.row,
          backend_ref: JSON.stringify(victim.backendRef),
        });
        await checkpointAudit(t.ctx, { force: true }).catch(() => undefined);
        assert.equal(await backend.exists(victim.backendRef), true, 'an `_audit` row destroyed a scope key');
      });

      it('2. sign grants added to an existing client: the whole client is refused (401, not 403)', async () => {
        await setup();
        const c = await addClient(t.ctx, 'narrow', { alpha: ['verify'] }, 'test');
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 403);
        assert.equal((await verify('alpha', c.secret)).status, 200);
        await sql.update(c.client.id, {
          grants: JSON.stringify({ alpha: ['sign', 'verify'], beta: ['sign', 'verify'] }),
          updated_at: t.clock.now().getTime() + 1,
        });
        await assertRefused(c.secret);
        await assertDetected(c.client.id, 'seal-invalid');
      });

      it('2b. grants added without touching updated_at, after the secret was cached: 401 at the next poll', async () => {
        await setup();
        const c = await addClient(t.ctx, 'cached', { alpha: ['verify'] }, 'test');
        await auth.poll();
        assert.equal((await verify('alpha', c.secret)).status, 200);
        await sql.update(c.client.id, { grants: JSON.stringify({ alpha: ['sign', 'verify'] }) });
        await assertRefused(c.secret);
        await assertDetected(c.client.id, 'seal-invalid');
      });

      it('3. a secret hash swapped for the attacker’s: 401 for the attacker’s secret (and the owner’s)', async () => {
        await setup();
        const c = await addClient(t.ctx, 'victim', { alpha: ['sign', 'verify'] }, 'test');
        const mine = await attackerSecret(c.client.id);
        await sql.update(c.client.id, { secret_hash: mine.secretHash });
        await assertRefused(mine.secret);
        await assertRefused(c.secret);
        await assertDetected(c.client.id, 'seal-invalid');
      });

      it('4. a seal copied from another client (onto an inserted row, and onto a changed one): 401', async () => {
        await setup();
        const good = await addClient(t.ctx, 'good', { alpha: ['sign', 'verify'], beta: ['sign'] }, 'test');
        const narrow = await addClient(t.ctx, 'narrow', { alpha: ['verify'] }, 'test');
        const seal = (await sql.read(good.client.id))!.seal as string;
        const made = await attackerClientRow({ alpha: ['sign'] }, { seal });
        await sql.insert(made.row);
        // narrow takes good's grants and seal: every sealed fact but id, name and secret is good's.
        await sql.update(narrow.client.id, { grants: JSON.stringify(good.client.grants), seal });
        await assertRefused(made.secret);
        await assertRefused(narrow.secret);
        await assertDetected(made.id, 'seal-invalid');
        await assertDetected(narrow.client.id, 'seal-invalid');
        // The client whose seal was copied keeps working.
        assert.equal((await sign('alpha', good.secret)).status, 200);
      });

      it('5. a seal stripped from a working client: 401 at the next poll, reported as unsealed', async () => {
        await setup();
        const c = await addClient(t.ctx, 'stripped', { alpha: ['sign'] }, 'test');
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 200);
        await sql.update(c.client.id, { seal: null });
        await assertRefused(c.secret);
        await assertDetected(c.client.id, 'unsealed');
        // And a seal column that is not a seal at all.
        await sql.update(c.client.id, { seal: '{"kid":' });
        await assertRefused(c.secret);
        await assertDetected(c.client.id, 'seal-invalid');
      });

      it('rotate-secret seals the new secret; it refuses a client no HSM key vouches for', async () => {
        await setup();
        const c = await addClient(t.ctx, 'rotating', { alpha: ['sign'] }, 'test');
        const rotated = await rotateClientSecret(t.ctx, 'rotating', 'test');
        await auth.poll();
        assert.equal((await sign('alpha', rotated.secret)).status, 200);
        assert.equal((await sign('alpha', c.secret)).status, 401);
        await sql.update(c.client.id, { grants: JSON.stringify({ alpha: ['sign'], beta: ['sign'] }) });
        const before = await sql.read(c.client.id);
        await assert.rejects(rotateClientSecret(t.ctx, 'rotating', 'test'), (e) =>
          hasCode(e, 'CLIENT_UNTRUSTED'),
        );
        assert.deepEqual(await sql.read(c.client.id), before, 'a refused rotation changed the row');
      });

      it('no audit key backend: adding a client fails closed and writes nothing', async () => {
        await setup();
        const config = { ...t.config, backends: {}, audit: { ...t.config.audit, backend: undefined } };
        const ctx = { ...t.ctx, config: config as unknown as KeywardenConfig };
        await assert.rejects(sealingAuditKey(ctx, 'test'), (e) => {
          assert.ok(hasCode(e, 'CONFIG_INVALID'));
          assert.match((e as Error).message, /set audit\.backend or configure a pkcs11 backend/);
          return true;
        });
        await assert.rejects(addClient(ctx, 'nope', { alpha: ['sign'] }, 'test'), (e) =>
          hasCode(e, 'CONFIG_INVALID'),
        );
        assert.deepEqual(await new ClientRepository(t.rt.ds).scan(), []);
      });

      /** A checkpoint now (something to cover is recorded first: any record will do). */
      const checkpointNow = async () => {
        await t.ctx.audit.record({ type: 'access.denied', actor: 'test' });
        await checkpointAudit(t.ctx, { force: true });
      };

      it('legitimate clients survive an audit key renewal: re-sealed by the daemon before the old key is destroyed', async () => {
        await setup();
        const c = await addClient(t.ctx, 'long-lived', { alpha: ['sign', 'verify'] }, 'test');
        const first = signingAuditKey(await t.ctx.keys.listByScope(AUDIT_SCOPE), t.clock.now())!;
        const sealedBy = async () => decodeClientSeal((await sql.read(c.client.id))!.seal as string)?.kid;
        assert.equal(await sealedBy(), first.kid);

        // 89.5 days on the audit key has half a day left to sign: the next checkpoint renews it.
        t.clock.advanceSeconds(89.5 * DAY);
        await checkpointNow();
        const renewed = signingAuditKey(await t.ctx.keys.listByScope(AUDIT_SCOPE), t.clock.now())!;
        assert.notEqual(renewed.kid, first.kid);
        assert.equal(await sealedBy(), first.kid, 'nothing re-seals on the checkpoint path');

        // 40 days on the old key is past its destroy time, but the client's seal still needs it.
        t.clock.advanceSeconds(40 * DAY);
        await checkpointNow();
        assert.equal((await t.ctx.keys.findById(first.id))!.destroyedAt, null, 'destroyed under a live seal');
        assert.ok(
          logs.lines().some((l) => l.kid === first.kid && /kept past its destroy time/.test(String(l.msg))),
        );
        await reconcileAll(t.ctx, 'test');
        await t.ctx.cache.refresh(true);
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 200, 'refused while sealed by the retired key');

        // The scheduling process's pass re-seals it with the current key (once, idempotently).
        const pass = await maintainClientSeals(t.ctx);
        assert.deepEqual(pass.resealed, ['long-lived']);
        assert.equal(await sealedBy(), renewed.kid);
        assert.deepEqual((await maintainClientSeals(t.ctx)).resealed, []);
        const records = await new AuditStore(t.rt.ds).tail({ type: 'client.resealed', limit: 10 });
        assert.deepEqual(
          records.map((r) => [r.data.name, r.data.previousKid, r.data.kid]),
          [['long-lived', first.kid, renewed.kid]],
        );

        // Now the old key goes, and the client keeps working here and in a fresh process.
        await checkpointNow();
        const old = (await t.ctx.keys.findById(first.id))!;
        assert.ok(old.destroyedAt, 'the retired audit key was not destroyed after the re-seal');
        assert.equal(await (await t.ctx.backend('hsm')).exists(old.backendRef), false);
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 200);
        assert.equal((await verify('alpha', c.secret)).status, 200);
        assert.equal((await checkClientSecret((await restart()).ctx, c.secret))?.id, c.client.id);
      });

      it('two processes re-sealing at once leave one valid seal', async () => {
        await setup();
        const c = await addClient(t.ctx, 'raced', { alpha: ['sign'] }, 'test');
        t.clock.advanceSeconds(89.5 * DAY);
        await checkpointNow();
        const other = await restart();
        const [a, b] = await Promise.all([maintainClientSeals(t.ctx), maintainClientSeals(other.ctx)]);
        assert.equal(a.resealed.length + b.resealed.length, 1, JSON.stringify([a, b]));
        await reconcileAll(t.ctx, 'test');
        await t.ctx.cache.refresh(true);
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 200);
      });

      it('upgrade: a client made before sealing is refused (with what to run) until `clients seal`, then works', async () => {
        const made = await attackerClientRow(
          { alpha: ['sign', 'verify'] },
          { name: 'legacy', now: T0 - DAY },
        );
        await setup({
          // The store as the previous release left it, holding a client its CLI made.
          beforeOpen: async (_dir, url) => {
            const ds = url.startsWith('sqlite:')
              ? new DataSource({
                  type: 'better-sqlite3',
                  database: url.slice(7),
                  migrations: BEFORE_CLIENT_SEAL,
                })
              : new DataSource({ type: 'postgres', url, migrations: BEFORE_CLIENT_SEAL });
            await ds.initialize();
            await ds.runMigrations({ transaction: 'each' });
            const { seal: _none, ...columns } = made.row;
            await clientWriter(ds).insert(columns);
            await ds.destroy();
          },
        });
        await assertRefused(made.secret);
        await assertDetected(made.id, 'unsealed');
        assert.match(
          String(logs.lines().find((l) => l.clientId === made.id)!.todo),
          /keywarden clients seal legacy/,
        );
        await assert.rejects(rotateClientSecret(t.ctx, 'legacy', 'test'), (e) =>
          hasCode(e, 'CLIENT_UNTRUSTED'),
        );

        // A tampered client next to it: --all never vouches for a row whose seal does not verify.
        const tampered = await addClient(t.ctx, 'tampered', { alpha: ['verify'] }, 'test');
        await sql.update(tampered.client.id, { grants: JSON.stringify({ alpha: ['sign', 'verify'] }) });

        // Bad requests change nothing.
        const seal = (req: Partial<Parameters<typeof sealClients>[1]>) =>
          sealClients(
            t.ctx,
            { clients: [], all: false, force: false, dryRun: false, ...req },
            'cli:ops@host',
          );
        const snapshot = async () => new ClientRepository(t.rt.ds).scan();
        const before = await snapshot();
        for (const [req, code] of [
          [{}, 'REQUEST_INVALID'],
          [{ clients: ['legacy'], all: true }, 'REQUEST_INVALID'],
          [{ all: true, force: true }, 'REQUEST_INVALID'],
          [{ clients: ['legacy', 'nobody'] }, 'CLIENT_NOT_FOUND'],
          [{ clients: ['legacy', 'tampered'] }, 'CLIENT_UNTRUSTED'],
        ] as const) {
          await assert.rejects(seal(req), (e) => hasCode(e, code), JSON.stringify(req));
        }
        assert.deepEqual(await snapshot(), before);

        // A dry run says what it would seal and changes nothing.
        const dry = await seal({ all: true, dryRun: true });
        assert.deepEqual(
          dry.clients.map((c) => [c.name, c.was, c.action]),
          [
            ['legacy', 'unsealed', 'sealed'],
            ['tampered', 'seal-invalid', 'skipped'],
          ],
        );
        assert.deepEqual(await snapshot(), before);
        await assertRefused(made.secret);

        const done = await seal({ all: true });
        assert.deepEqual(
          done.clients.map((c) => [c.name, c.action]),
          [
            ['legacy', 'sealed'],
            ['tampered', 'skipped'],
          ],
        );
        await auth.poll();
        assert.equal((await sign('alpha', made.secret)).status, 200);
        assert.equal((await checkClientSecret((await restart()).ctx, made.secret))?.name, 'legacy');
        const records = await new AuditStore(t.rt.ds).tail({ type: 'client.sealed', limit: 10 });
        assert.deepEqual(
          records.map((r) => [r.actor, r.data.name, r.data.was]),
          [['cli:ops@host', 'legacy', 'unsealed']],
        );
        // Running it again finds nothing more to do.
        assert.deepEqual(
          (await seal({ clients: ['legacy'] })).clients.map((c) => c.action),
          ['already-sealed'],
        );
        // The tampered row is sealed only when named with --force, as it is now.
        await seal({ clients: ['tampered'], force: true });
        await auth.poll();
        assert.equal((await sign('alpha', tampered.secret)).status, 200);
      });

      it('an audit key made before sealing is confirmed against the HSM and sealed before it seals a client; a tampered one seals nothing', async () => {
        await setup();
        const backend = await t.ctx.backend('hsm');
        /** An audit key as the previous release made it: generated and recorded, never sealed. */
        const legacyAuditKey = async (): Promise<KeyRecord> => {
          // Activated after any audit key made so far, so it is the one that signs.
          t.clock.advanceSeconds(1);
          const now = t.clock.now();
          const row = {
            id: randomUUID(),
            scope: AUDIT_SCOPE,
            alg: 'ES256' as const,
            ...timelineForNewKey(AUDIT_KEY_POLICY, now, { immediate: true }),
            revokedAt: null,
            revokedReason: null,
            destroyedAt: null,
            createdAt: now,
            createdBy: 'previous-release',
          };
          return makeUnsealedKey(t.ctx.keys, backend, row, now);
        };
        const legacy = await legacyAuditKey();
        const c = await addClient(t.ctx, 'upgraded', { alpha: ['sign'] }, 'test');
        assert.equal(decodeClientSeal((await sql.read(c.client.id))!.seal as string)?.kid, legacy.kid);
        const [answer] = await backend.inspectKeys([{ ref: legacy.backendRef, alg: 'ES256' }]);
        assert.ok(
          answer?.status === 'found' && answer.facts.seal !== null,
          'the legacy audit key was not sealed',
        );
        const records = await new AuditStore(t.rt.ds).tail({ type: 'key.sealed', limit: 10 });
        assert.ok(records.some((r) => r.kid === legacy.kid && r.scope === AUDIT_SCOPE));
        await auth.poll();
        assert.equal((await sign('alpha', c.secret)).status, 200);

        // One whose row was changed (expiry a day later) does not match what the HSM recorded.
        const tampered = await legacyAuditKey();
        await storeWriter(t.rt.ds).update(tampered.id, {
          expires_at: tampered.expiresAt.getTime() + DAY * 1000,
        });
        await assert.rejects(addClient(t.ctx, 'never', { alpha: ['sign'] }, 'test'), (e) =>
          hasCode(e, 'KEY_NOT_USABLE'),
        );
        assert.equal(
          (await listClients(t.ctx)).some((x) => x.name === 'never'),
          false,
        );
        const [again] = await backend.inspectKeys([{ ref: tampered.backendRef, alg: 'ES256' }]);
        assert.ok(
          again?.status === 'found' && again.facts.seal === null,
          'the tampered audit key was sealed',
        );
      });
    });
  }
});
