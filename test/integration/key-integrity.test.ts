/**
 * Trust lives in the HSM (docs/security-model.md): an attacker who can write the store but not
 * use the HSM edits key rows with plain SQL. No edit, alone or combined, may make the process
 * publish, sign with or accept a key it should not; every edit is detected (error log line,
 * audit record, the integrity report that feeds /readyz and metrics, `keys verify`). Each attack
 * runs on SQLite and on PostgreSQL, in the running process and in a fresh one (a restart), on a
 * real SoftHSM2 token, driven by a fake clock.
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { AuditStore } from '../../src/audit/audit-store';
import { buildJwks } from '../../src/lifecycle/build-jwks';
import { reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { revokeKey } from '../../src/lifecycle/revoke-key';
import { signToken } from '../../src/lifecycle/sign-token';
import { verifyKeyRows } from '../../src/lifecycle/verify-key-rows';
import { verifyToken } from '../../src/lifecycle/verify-token';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import type { KeyRecord } from '../../src/policy/key';
import type { KeyRefusalReason } from '../../src/policy/key-integrity';
import { pickSigningKey } from '../../src/policy/next-actions';
import { timelineForNewKey } from '../../src/policy/timeline';
import type { KeywardenConfig } from '../../src/policy/scope';
import { validateConfig } from '../../src/config/validate-config';
import { parseJwks } from '../../packages/verify/src/jwks';
import { validateToken } from '../../packages/verify/src/validate-token';
import { signWithKey } from '../helpers/daemon';
import { forge } from '../unit/verify/fixtures';
import { captureLog } from '../helpers/capture-log';
import { makeUnsealedKey } from '../helpers/leftover-key';
import { bothStores } from '../helpers/postgres';
import { startTestRuntime, testConfigDocument, type TestRuntime } from '../helpers/runtime';
import { attackerKeyRow, rawColumns, storeWriter, type StoreWriter } from '../helpers/store-tamper';

const { stores: STORES, stop: stopPostgres } = bothStores('integrity');
// enterprise allows keys of up to two days, so a legacy key's expiry moved a day later stays
// within its policy and only the backend's recorded validity can tell.
const SCOPES = [
  { name: 'consumer' },
  { name: 'enterprise', policy: { maxKeyLifetime: '2d' } },
  { name: 'tenant' },
];

describe('key integrity: a store write never becomes a signing or validation capability', function () {
  this.timeout(120_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(`on ${store.name}`, () => {
      let t: TestRuntime;
      let logs: ReturnType<typeof captureLog>;
      let sql: StoreWriter;
      /** Fresh processes opened on the same store and token (closed after each test). */
      const reopened: Runtime[] = [];

      beforeEach(async () => {
        logs = captureLog();
        t = await startTestRuntime(SCOPES, {
          storeUrl: await store.url(),
          auditIntegrity: true,
          log: logs.log,
        });
        for (const s of SCOPES) await reconcileScope(t.ctx, s.name);
        sql = storeWriter(t.rt.ds);
      });
      afterEach(async () => {
        for (const rt of reopened.splice(0)) await rt.close();
        await t?.close();
      });

      const keyOf = async (scope: string): Promise<KeyRecord> => {
        const keys = (await t.ctx.keys.listByScope(scope)).filter((k) => k.status === 'ready');
        return pickSigningKey(keys, t.clock.now()) as KeyRecord;
      };
      const claimsFor = (scope: string, extra: Record<string, unknown> = {}) => {
        const now = Math.floor(t.clock.now().getTime() / 1000);
        const issuer = t.config.scopes.find((s) => s.name === scope)!.issuer;
        return {
          iss: issuer,
          aud: `${scope}-api`,
          sub: 'mallory',
          iat: now,
          nbf: now,
          exp: now + 60,
          jti: randomUUID(),
          ...extra,
        };
      };
      /** A token signed by an HSM key (a leaked key, or one the attacker tries to re-scope). */
      const tokenBy = (key: KeyRecord, scope: string, extra: Record<string, unknown> = {}) =>
        signWithKey(t.ctx, key, { alg: key.alg, kid: key.kid, typ: 'JWT' }, claimsFor(scope, extra));
      /** Another process on the same store and token: what a restart sees. */
      const restart = async (config: KeywardenConfig = t.config): Promise<Runtime> => {
        const rt = await openRuntime(config, {
          log: pino({ level: 'silent' }),
          clock: t.clock,
          audit: storeAuditLog(),
        });
        reopened.push(rt);
        return rt;
      };

      /**
       * Every verification path of `ctx`'s process refuses `token` for `scope`: the server's
       * verify (route and CLI call it), the relying-party library over the scope's JWKS as the
       * process publishes it, and the JWKS does not carry `kid`.
       */
      async function assertRefusedEverywhere(ctx: Runtime['ctx'], scope: string, token: string, kid: string) {
        const server = await verifyToken(ctx, scope, token, `${scope}-api`);
        assert.equal(server.valid, false, `server verify accepted a forged ${scope} token`);
        const view = ctx.cache.view(scope)!;
        const jwks = ctx.cache.jwks(view);
        assert.ok(!jwks.kids.includes(kid), `the ${scope} JWKS publishes ${kid}`);
        assert.ok(!view.byKid.has(kid), `the ${scope} view holds ${kid}`);
        const issuer = ctx.config.scopes.find((s) => s.name === scope)!.issuer;
        const keys = parseJwks(jwks.body, issuer);
        const lib = await validateToken(token, (k) => keys.filter((x) => x.kid === k), {
          issuer,
          audience: `${scope}-api`,
          now: ctx.clock.now(),
        });
        assert.equal(lib.valid, false, 'the library accepted it from the published JWKS');
      }

      /** The process never signs for `scope` with `kid`. */
      async function assertNeverSignsWith(ctx: Runtime['ctx'], scope: string, kid: string) {
        try {
          const signed = await signToken(ctx, scope, { claims: { aud: `${scope}-api`, sub: 'x' } });
          assert.notEqual(signed.kid, kid, `scope ${scope} signed with the tampered key`);
        } catch (e) {
          assert.equal((e as { code?: string }).code, 'NO_ACTIVE_KEY');
        }
      }

      /** Detection: the refusal is in the report, in an error log line and in the audit log. */
      async function assertDetected(keyId: string, scope: string, reason: KeyRefusalReason) {
        const report = t.ctx.cache.integrity.report!;
        assert.ok(
          report.refused.some((r) => r.keyId === keyId && r.scope === scope && r.reason === reason),
          `no ${reason} refusal of ${keyId} in ${JSON.stringify(report.refused)}`,
        );
        assert.ok(
          logs.lines().some((l) => l.level === 50 && l.keyId === keyId && l.reason === reason),
          `no error log line for ${keyId} ${reason}`,
        );
        const records = await new AuditStore(t.rt.ds).tail({ type: 'key.integrity-failed', limit: 100 });
        assert.ok(
          records.some((r) => r.scope === scope && (r.data as { keyId?: string }).keyId === keyId),
          `no audit record for ${keyId}`,
        );
        const verify = await verifyKeyRows(t.ctx);
        assert.equal(verify.ok, false);
        assert.equal(verify.trust.get(keyId), 'refused');
      }

      it('a new key is sealed in its backend, and the seal is over its row', async () => {
        const key = await keyOf('consumer');
        const backend = await t.ctx.backend('hsm');
        const [answer] = await backend.inspectKeys([{ ref: key.backendRef, alg: key.alg }]);
        assert.equal(answer?.status, 'found');
        assert.ok(answer.status === 'found' && answer.facts.seal !== null);
        const r = await verifyKeyRows(t.ctx);
        assert.ok(r.ok);
        assert.equal(r.trust.get(key.id), 'trusted');
      });

      it('1. an inserted row with the attacker’s public key is never published and its tokens never verify', async () => {
        const template = await keyOf('enterprise');
        const { row, kid, privateKey } = await attackerKeyRow(template, 'enterprise');
        await sql.insert(row);
        const forged = forge({ alg: 'ES256', kid, typ: 'JWT' }, claimsFor('enterprise'), privateKey);
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'enterprise', forged, kid);
        await assertNeverSignsWith(t.ctx, 'enterprise', kid);
        await assertDetected(row.id!, 'enterprise', 'object-missing');
        await assertRefusedEverywhere((await restart()).ctx, 'enterprise', forged, kid);
      });

      it('1b. an inserted row pointing at a real key of another scope (a copied row) is refused', async () => {
        const consumer = await keyOf('consumer');
        const id = randomUUID();
        // kid is unique in the store, so the copy carries a kid of its own next to the original.
        const copy = { ...consumer, id, scope: 'enterprise', kid: `${consumer.kid!.slice(0, 40)}-copy` };
        await sql.insert(rawColumns(copy));
        const token = await tokenBy(copy, 'enterprise');
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'enterprise', token, copy.kid);
        await assertDetected(id, 'enterprise', 'label-mismatch');
        await assertRefusedEverywhere((await restart()).ctx, 'enterprise', token, copy.kid);
      });

      it('2. a re-scoped row (consumer -> enterprise) signs nothing and verifies nothing for enterprise: Storm-0558 through the store', async () => {
        const consumer = await keyOf('consumer');
        await sql.update(consumer.id, { scope: 'enterprise' });
        const token = await tokenBy(consumer, 'enterprise');
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'enterprise', token, consumer.kid!);
        await assertNeverSignsWith(t.ctx, 'enterprise', consumer.kid!);
        await assertDetected(consumer.id, 'enterprise', 'label-mismatch');
        // With its own row gone from consumer, consumer gets a fresh key; the moved one never returns.
        await reconcileScope(t.ctx, 'consumer');
        await assertNeverSignsWith(t.ctx, 'consumer', consumer.kid!);
        await assertRefusedEverywhere((await restart()).ctx, 'enterprise', token, consumer.kid!);
      });

      it('3. times moved later keep nothing alive past its real expiry', async () => {
        const key = await keyOf('tenant');
        t.clock.set(key.expiresAt.getTime() + 1000);
        await t.ctx.cache.refresh(true);
        const token = await tokenBy(key, 'tenant');
        // An hour later breaks the policy (lifetime over maxKeyLifetime), sealed or not.
        const hour = 3_600_000;
        await sql.update(key.id, {
          retire_at: key.retireAt.getTime() + hour,
          expires_at: key.expiresAt.getTime() + hour,
        });
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'tenant', token, key.kid!);
        await assertDetected(key.id, 'tenant', 'policy-violation');
        // Four minutes later stays within the policy: only the seal can tell.
        await sql.update(key.id, {
          retire_at: key.retireAt.getTime() + 240_000,
          expires_at: key.expiresAt.getTime() + 240_000,
        });
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'tenant', token, key.kid!);
        await assertNeverSignsWith(t.ctx, 'tenant', key.kid!);
        await assertDetected(key.id, 'tenant', 'seal-invalid');
        await assertRefusedEverywhere((await restart()).ctx, 'tenant', token, key.kid!);
      });

      it('4. revoke, then clear the column: the key stays dead (its objects are gone)', async () => {
        const key = await keyOf('tenant');
        const before = await tokenBy(key, 'tenant');
        const r = await revokeKey(t.ctx, key.kid!, 'leaked', 'test');
        assert.equal(r.destroyed, true);
        const backend = await t.ctx.backend('hsm');
        assert.equal(await backend.exists(key.backendRef), false, 'revocation destroys the key at once');
        await sql.update(key.id, { revoked_at: null, revoked_reason: null, destroyed_at: null });
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'tenant', before, key.kid!);
        await assertNeverSignsWith(t.ctx, 'tenant', key.kid!);
        await assertDetected(key.id, 'tenant', 'object-missing');
        await assertRefusedEverywhere((await restart()).ctx, 'tenant', before, key.kid!);
      });

      it('4b. a revocation is not dodged by redirecting the reference first: the key is destroyed by its label', async () => {
        const key = await keyOf('tenant');
        const before = await tokenBy(key, 'tenant');
        const backend = await t.ctx.backend('hsm');
        // Point the row at an address where nothing is, let the operator revoke, then undo both.
        const elsewhere = backend.planKey({ scope: 'tenant', keyId: key.id });
        await sql.update(key.id, { backend_ref: JSON.stringify(elsewhere) });
        const r = await revokeKey(t.ctx, key.kid!, 'leaked', 'test');
        assert.equal(r.destroyed, true);
        assert.equal(await backend.exists(key.backendRef), false, 'the real key survived the revocation');
        await sql.update(key.id, {
          backend_ref: JSON.stringify(key.backendRef),
          revoked_at: null,
          revoked_reason: null,
          destroyed_at: null,
        });
        await t.ctx.cache.refresh();
        await assertRefusedEverywhere(t.ctx, 'tenant', before, key.kid!);
        await assertNeverSignsWith(t.ctx, 'tenant', key.kid!);
        await assertDetected(key.id, 'tenant', 'object-missing');
        await assertRefusedEverywhere((await restart()).ctx, 'tenant', before, key.kid!);
      });

      it('5. a deleted row is reported at the next reload, not at the next restart', async () => {
        const key = await keyOf('consumer');
        await sql.remove(key.id);
        await t.ctx.cache.refresh();
        const missing = t.ctx.cache.integrity.report!.missingRows;
        assert.deepEqual(
          missing.map((m) => [m.keyId, m.scope]),
          [[key.id, 'consumer']],
        );
        assert.ok(
          logs.lines().some((l) => l.level === 50 && l.keyId === key.id && /row missing/.test(String(l.msg))),
        );
        const records = await new AuditStore(t.rt.ds).tail({ type: 'key.row-missing', limit: 10 });
        assert.equal(records.length, 1);
        assert.equal((records[0]!.data as { keyId: string }).keyId, key.id);
        assert.equal((await verifyKeyRows(t.ctx)).ok, false);
        // Its tokens die (denial of service, not forgery) and the scope gets a new key.
        const token = await tokenBy(key, 'consumer');
        assert.equal((await verifyToken(t.ctx, 'consumer', token, 'consumer-api')).valid, false);
        await reconcileScope(t.ctx, 'consumer');
        await assertNeverSignsWith(t.ctx, 'consumer', key.kid!);
      });

      it('combined: re-scope and re-time, a row copied from another scope with later times, and alg and reference swaps', async () => {
        const consumer = await keyOf('consumer');
        const tenant = await keyOf('tenant');
        const enterprise = await keyOf('enterprise');
        // Re-scope plus later times, all within the policy so only the seal can tell.
        await sql.update(consumer.id, {
          scope: 'enterprise',
          retire_at: consumer.retireAt.getTime() + 60_000,
          expires_at: consumer.expiresAt.getTime() + 60_000,
        });
        // The tenant row now points at the enterprise key's object (a swapped reference).
        await sql.update(tenant.id, { backend_ref: JSON.stringify(enterprise.backendRef) });
        // The enterprise row claims another alg.
        await sql.update(enterprise.id, { alg: 'ES384' });
        // A copy of the tenant row in the consumer scope, with later times (its own kid: kids are unique).
        const copy = {
          ...tenant,
          id: randomUUID(),
          scope: 'consumer',
          kid: `${tenant.kid!.slice(0, 40)}-copy`,
          retireAt: new Date(tenant.retireAt.getTime() + 60_000),
          expiresAt: new Date(tenant.expiresAt.getTime() + 60_000),
        };
        await sql.insert(rawColumns(copy));
        await t.ctx.cache.refresh();
        const report = t.ctx.cache.integrity.report!;
        const reasonOf = (id: string) => report.refused.find((r) => r.keyId === id)?.reason;
        assert.equal(reasonOf(consumer.id), 'label-mismatch');
        assert.equal(reasonOf(tenant.id), 'label-mismatch');
        assert.ok(['public-key-mismatch', 'seal-invalid'].includes(String(reasonOf(enterprise.id))));
        assert.equal(reasonOf(copy.id), 'label-mismatch');
        for (const [key, scope] of [
          [consumer, 'enterprise'],
          [enterprise, 'tenant'],
          [enterprise, 'enterprise'],
          [copy, 'consumer'],
        ] as const) {
          await assertRefusedEverywhere(t.ctx, scope, await tokenBy(key, scope), key.kid!);
        }
        // And after a restart, the same.
        const rt = await restart();
        assert.equal(rt.ctx.cache.view('enterprise')!.keys.length, 0);
        assert.equal(rt.ctx.cache.view('tenant')!.keys.length, 0);
        assert.equal(rt.ctx.cache.view('consumer')!.byKid.has(copy.kid), false);
      });

      it('a sealed key is still refused when it breaks its scope’s policy as configured now', async () => {
        const key = await keyOf('tenant');
        const lifetime = (key.expiresAt.getTime() - key.publishAt.getTime()) / 1000;
        const doc = testConfigDocument(
          t.token,
          SCOPES.map((s) =>
            s.name === 'tenant'
              ? {
                  ...s,
                  policy: { activeFor: '1m', verifyGrace: '5m', maxTokenTtl: '5m', maxKeyLifetime: '8m' },
                }
              : s,
          ),
          { store: t.config.store },
        );
        const config = validateConfig(doc, { source: '<tightened>', baseDir: t.token.dir });
        assert.ok(lifetime > 8 * 60, 'the key lives longer than the tightened policy allows');
        const rt = await openRuntime(config, {
          log: pino({ level: 'silent' }),
          clock: t.clock,
          audit: storeAuditLog(),
        });
        reopened.push(rt);
        assert.equal(rt.ctx.cache.view('tenant')!.byKid.has(key.kid!), false);
        assert.equal(
          rt.ctx.cache.integrity.report!.refused.find((r) => r.keyId === key.id)?.reason,
          'policy-violation',
        );
      });

      it('the JWKS built from every row the store holds would differ: the filter is what protects', async () => {
        // Guard against a vacuous pass: the forged row of attack 1 is in the store and would be
        // published by a JWKS built straight from the rows.
        const template = await keyOf('enterprise');
        const { row, kid } = await attackerKeyRow(template, 'enterprise');
        await sql.insert(row);
        const all = await t.ctx.keys.listByScope('enterprise');
        const scope = t.config.scopes.find((s) => s.name === 'enterprise')!;
        assert.ok(buildJwks(scope, all, t.clock.now()).kids.includes(kid));
        await t.ctx.cache.refresh();
        assert.ok(!t.ctx.cache.jwks(t.ctx.cache.view('enterprise')!).kids.includes(kid));
      });

      describe('an upgraded store whose keys were made before sealing', () => {
        /** A key as the previous release made it: generated and recorded, never sealed. */
        async function legacyKey(
          scope: string,
          opts: { immediate: boolean } = { immediate: true },
        ): Promise<KeyRecord> {
          const config = t.config.scopes.find((x) => x.name === scope)!;
          const now = t.clock.now();
          const row = {
            id: randomUUID(),
            scope,
            alg: 'ES256' as const,
            ...timelineForNewKey(config.policy, now, opts),
            revokedAt: null,
            revokedReason: null,
            destroyedAt: null,
            createdAt: now,
            createdBy: 'previous-release',
          };
          return makeUnsealedKey(t.ctx.keys, await t.ctx.backend('hsm'), row, now);
        }

        it('matching keys are confirmed, sealed once and keep working; a tampered one is refused and never sealed', async () => {
          const good = await legacyKey('consumer');
          const moved = await legacyKey('enterprise');
          const rescoped = await legacyKey('tenant');
          const before = await tokenBy(good, 'consumer');
          // Tampered before the upgrade: expiry a day later (within the policy only the backend's
          // recorded validity can tell), and a scope change.
          const day = 86_400_000;
          await sql.update(moved.id, { expires_at: moved.expiresAt.getTime() + day });
          await sql.update(rescoped.id, { scope: 'consumer' });

          // The upgraded daemon starts: nothing unsealed is trusted yet.
          const rt = await restart();
          const reasons = () =>
            new Map(rt.ctx.cache.integrity.report!.refused.map((r) => [r.keyId, r.reason]));
          assert.equal(reasons().get(good.id), 'unsealed');
          assert.equal(rt.ctx.cache.view('consumer')!.byKid.has(good.kid!), false);
          // Its first reconcile confirms and seals what matches, and only that.
          for (const s of SCOPES) await reconcileScope(rt.ctx, s.name, 'upgrade');
          assert.equal(reasons().get(good.id), undefined, 'the matching key is trusted');
          assert.equal((await verifyToken(rt.ctx, 'consumer', before, 'consumer-api')).valid, true);
          assert.equal(reasons().get(rescoped.id), 'label-mismatch');
          // (its lifetime is within the consumer policy, so only the label tells)
          const backend = await rt.ctx.backend('hsm');
          const [m] = await backend.inspectKeys([{ ref: moved.backendRef, alg: 'ES256' }]);
          assert.ok(m?.status === 'found' && m.facts.seal === null, 'the tampered key was sealed');
          const [r] = await backend.inspectKeys([{ ref: rescoped.backendRef, alg: 'ES256' }]);
          assert.ok(r?.status === 'found' && r.facts.seal === null, 'the re-scoped key was sealed');
          assert.equal(reasons().get(moved.id), 'legacy-mismatch');
          const records = await new AuditStore(rt.ds).tail({ limit: 200 });
          assert.ok(records.some((x) => x.type === 'key.sealed' && x.kid === good.kid));
          assert.ok(records.some((x) => x.type === 'key.seal-refused' && x.kid === moved.kid));
          // Sealed once: the backend refuses a second seal, so no store edit can get one re-made.
          await assert.rejects(
            backend.attachSeal(good.backendRef, Buffer.from('v1.AAAAAAAAAAAAAAAAAAAAAA')),
            {
              code: 'BACKEND_OBJECT_EXISTS',
            },
          );
          await assertNeverSignsWith(rt.ctx, 'enterprise', moved.kid!);
        });
      });
    });
  }
});
