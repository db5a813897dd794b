/**
 * The store-write attacks of docs/security-model.md against a running `keywarden serve`, on
 * SQLite and on PostgreSQL: an attacker with plain SQL access to the store (no HSM access)
 * inserts a row with their own public key, re-scopes a key (Storm-0558 through the store),
 * re-scopes and re-times another, moves an expired key's times later, clears a revocation,
 * copies a row into another scope, and deletes an active row. No forged or cross-scope token
 * is accepted on any path (the verify route, `keywarden verify`, the verify library, jose
 * against the JWKS), the daemon never signs with a tampered key, and every edit is detected
 * (error log, audit records, metrics, /readyz, `keys verify`), while the daemon runs and after
 * a restart with two workers.
 */
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { addClient } from '../../src/lifecycle/clients';
import type { Runtime } from '../../src/main';
import type { KeyRecord } from '../../src/policy/key';
import { createVerifier } from '@keywarden/verify';
import {
  signingKeyOf,
  signWithKey,
  startDaemon,
  startServe,
  type Daemon,
  type ServeProcess,
} from '../helpers/daemon';
import { bothStores } from '../helpers/postgres';
import { SECONDS_POLICY } from '../helpers/runtime';
import { until } from '../helpers/wait';
import { attackerKeyRow, rawColumns, storeWriter } from '../helpers/store-tamper';
import { forge } from '../unit/verify/fixtures';

const { stores: STORES, stop: stopPostgres } = bothStores('tamper');
const TENANT_POLICY = SECONDS_POLICY;
// Reconcile every 2 s, so a scope whose key was taken away gets a fresh one within the test.
const EVERY_2S = '*/2 * * * * *';
const SCOPES = [
  { name: 'consumer', schedule: EVERY_2S },
  { name: 'enterprise', schedule: EVERY_2S },
  { name: 'partner', schedule: EVERY_2S },
  { name: 'revoked', schedule: EVERY_2S },
  { name: 'deleted', schedule: EVERY_2S },
  { name: 'tenant', schedule: '* * * * * *', policy: TENANT_POLICY },
];

interface Forged {
  what: string;
  scope: string;
  token: string;
  kid: string;
}

interface Tampered {
  keyId: string;
  kid: string;
  scope: string;
  reason: string;
}

describe('store tampering against a running daemon (e2e)', function () {
  this.timeout(300_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(`on ${store.name}`, () => {
      let daemon: Daemon;
      let rt: Runtime;
      let secret: string;
      let restarted: ServeProcess | null = null;
      const forged: Forged[] = [];
      const tampered: Tampered[] = [];
      const tamperedKids = new Set<string>();
      let deletedRow: KeyRecord;

      const baseUrl = () => restarted?.baseUrl ?? daemon.baseUrl;
      const issuer = (scope: string) => daemon.issuer(scope);
      const claims = (scope: string) => {
        const now = Math.floor(Date.now() / 1000);
        return {
          iss: issuer(scope),
          aud: `${scope}-api`,
          sub: 'mallory',
          iat: now,
          nbf: now,
          exp: now + 2,
          jti: randomUUID(),
        };
      };
      const hsmToken = (key: KeyRecord, scope: string, kid = key.kid!) =>
        signWithKey(rt.ctx, key, { alg: key.alg, kid, typ: 'JWT' }, claims(scope));
      const post = async (path: string, body: unknown) => {
        const r = await fetch(`${baseUrl()}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> };
      };

      before(async () => {
        daemon = await startDaemon({ scopes: SCOPES, storeUrl: await store.url(), logLevel: 'info' });
        rt = await daemon.openRuntime();
        const grants = Object.fromEntries(SCOPES.map((s) => [s.name, ['sign', 'verify']]));
        secret = (await addClient(rt.ctx, 'rp', grants, 'test')).secret;
        const sql = storeWriter(rt.ds);
        const tamper = (key: KeyRecord, scope: string, reason: string) => {
          tampered.push({ keyId: key.id, kid: key.kid!, scope, reason });
          tamperedKids.add(key.kid!);
        };

        // 1. A row with the attacker's own public key, in enterprise, with a made-up reference.
        const enterprise = await signingKeyOf(rt.ctx, 'enterprise');
        const attacker = await attackerKeyRow(enterprise, 'enterprise');
        await sql.insert(attacker.row);
        tamper({ ...enterprise, id: attacker.row.id!, kid: attacker.kid }, 'enterprise', 'object-missing');
        forged.push({
          what: "attacker's own key",
          scope: 'enterprise',
          kid: attacker.kid,
          token: forge(
            { alg: 'ES256', kid: attacker.kid, typ: 'JWT' },
            claims('enterprise'),
            attacker.privateKey,
          ),
        });

        // 2. consumer's key re-scoped to enterprise (a leaked consumer key then signs for enterprise).
        const consumer = await signingKeyOf(rt.ctx, 'consumer');
        await sql.update(consumer.id, { scope: 'enterprise' });
        tamper(consumer, 'enterprise', 'label-mismatch');
        forged.push({
          what: 're-scoped consumer key',
          scope: 'enterprise',
          kid: consumer.kid!,
          token: await hsmToken(consumer, 'enterprise'),
        });

        // Combined: partner's key re-scoped and re-timed (still within the policy).
        const partner = await signingKeyOf(rt.ctx, 'partner');
        await sql.update(partner.id, {
          scope: 'enterprise',
          retire_at: partner.retireAt.getTime() + 60_000,
          expires_at: partner.expiresAt.getTime() + 60_000,
        });
        tamper(partner, 'enterprise', 'label-mismatch');
        forged.push({
          what: 're-scoped, re-timed partner key',
          scope: 'enterprise',
          kid: partner.kid!,
          token: await hsmToken(partner, 'enterprise'),
        });

        // 4. Revoke (the CLI, as an operator), then clear the columns.
        const revoked = await signingKeyOf(rt.ctx, 'revoked');
        const before = await hsmToken(revoked, 'revoked');
        const rev = await daemon.cli(['keys', 'revoke', '--reason', 'leaked', '--', revoked.kid!]);
        assert.equal(rev.code, 0, rev.stderr);
        await sql.update(revoked.id, { revoked_at: null, revoked_reason: null, destroyed_at: null });
        tamper(revoked, 'revoked', 'object-missing');
        forged.push({
          what: 'revoked key, revocation cleared',
          scope: 'revoked',
          kid: revoked.kid!,
          token: before,
        });

        // 3. tenant's first key, once expired (its object still exists), moved later.
        const first = await signingKeyOf(rt.ctx, 'tenant');
        await until('the first tenant key to expire', async () =>
          Date.now() > first.expiresAt.getTime() + 500 ? true : undefined,
        );
        // Ten minutes later: live again by its row for the whole test, within the 1 h policy.
        await sql.update(first.id, {
          retire_at: first.retireAt.getTime() + 600_000,
          expires_at: first.expiresAt.getTime() + 600_000,
        });
        tamper(first, 'tenant', 'seal-invalid');
        forged.push({
          what: 'expired key moved later',
          scope: 'tenant',
          kid: first.kid!,
          token: await hsmToken(first, 'tenant'),
        });

        // A row copied into tenant from another scope, pointing at that scope's real key.
        const replacement = await signingKeyOf(rt.ctx, 'revoked');
        const copy = {
          ...replacement,
          id: randomUUID(),
          scope: 'tenant',
          kid: `${replacement.kid!.slice(0, 40)}-copy`,
        };
        await sql.insert(rawColumns(copy));
        tamper(copy, 'tenant', 'label-mismatch');
        forged.push({
          what: 'row copied from another scope',
          scope: 'tenant',
          kid: copy.kid,
          token: await hsmToken(replacement, 'tenant', copy.kid),
        });

        // 5. The active row of `deleted` is deleted (its tokens die: denial of service).
        deletedRow = await signingKeyOf(rt.ctx, 'deleted');
        const deletedToken = await hsmToken(deletedRow, 'deleted');
        await sql.remove(deletedRow.id);
        forged.push({ what: 'deleted row', scope: 'deleted', kid: deletedRow.kid!, token: deletedToken });
        tamperedKids.add(deletedRow.kid!);
      });

      after(async () => {
        await rt?.close();
        await restarted?.stop();
        await daemon?.stop();
      });

      /** Every verification path refuses every forged token. */
      async function assertNothingAccepted(): Promise<void> {
        for (const f of forged) {
          const route = await post(`/v1/scopes/${f.scope}/verify`, {
            token: f.token,
            audience: `${f.scope}-api`,
          });
          assert.equal(route.status, 200, JSON.stringify(route.body));
          assert.equal(route.body.valid, false, `route accepted: ${f.what}`);
          const cli = await daemon.cli([
            'verify',
            '--scope',
            f.scope,
            '--audience',
            `${f.scope}-api`,
            f.token,
          ]);
          assert.equal(cli.code, 1, `CLI: ${f.what}: ${cli.stdout}${cli.stderr}`);
          const lib = await createVerifier({ issuer: issuer(f.scope), audience: `${f.scope}-api` }).verify(
            f.token,
          );
          assert.equal(lib.valid, false, `library accepted: ${f.what}`);
          const jwks = createRemoteJWKSet(new URL(`${baseUrl()}/scopes/${f.scope}/.well-known/jwks.json`));
          await assert.rejects(
            jwtVerify(f.token, jwks, { issuer: issuer(f.scope), audience: `${f.scope}-api` }),
            `jose accepted: ${f.what}`,
          );
          const doc = (await (
            await fetch(`${baseUrl()}/scopes/${f.scope}/.well-known/jwks.json`)
          ).json()) as {
            keys: { kid: string }[];
          };
          assert.ok(!doc.keys.some((k) => k.kid === f.kid), `${f.scope} JWKS publishes ${f.what}`);
        }
      }

      /** Every scope signs, when it can, with a key that was not tampered with. */
      async function assertNeverSignsTampered(): Promise<void> {
        for (const s of SCOPES) {
          const r = await until(`scope ${s.name} to sign`, async () => {
            const a = await post(`/v1/scopes/${s.name}/sign`, { claims: { aud: `${s.name}-api`, sub: 'x' } });
            return a.status === 200 ? a : undefined;
          });
          const kid = decodeProtectedHeader(r.body.token as string).kid as string;
          assert.ok(!tamperedKids.has(kid), `scope ${s.name} signed with tampered key ${kid}`);
        }
      }

      /** /readyz names each tampered scope and reason; metrics count them. */
      async function assertReadinessAndMetrics(): Promise<void> {
        const ready = await until('/readyz to report the refused rows', async () => {
          const r = await fetch(`${baseUrl()}/readyz`);
          const body = (await r.json()) as { checks: Record<string, { ok: boolean; detail: string }> };
          const detail = body.checks.keys?.detail ?? '';
          return r.status === 503 && tampered.every((t) => detail.includes(`scope ${t.scope}`))
            ? body
            : undefined;
        });
        for (const t of tampered)
          assert.match(ready.checks.keys!.detail, new RegExp(`scope ${t.scope}: [^;]*${t.reason}`));
        assert.match(ready.checks.keys!.detail, /1 backend key\(s\) whose row is missing/);
        const metrics = await (await fetch(`${baseUrl()}/metrics`)).text();
        for (const t of tampered) {
          assert.match(
            metrics,
            new RegExp(`keywarden_key_rows_refused\\{scope="${t.scope}",reason="${t.reason}"\\} [1-9]`),
          );
        }
        assert.match(metrics, /keywarden_key_rows_missing\{backend="hsm"\} 1/);
      }

      it('no forged, cross-scope, resurrected or re-timed token is accepted on any path', async () => {
        await until(
          'the daemon to reload',
          async () => ((await fetch(`${daemon.baseUrl}/readyz`)).status === 503 ? true : undefined),
          { context: () => daemon.output() },
        );
        await assertNothingAccepted();
      });

      it('the daemon never signs with a tampered key', assertNeverSignsTampered);

      it('each edit is detected: /readyz, metrics, error log lines, audit records, keys verify', async () => {
        await assertReadinessAndMetrics();
        const out = daemon.output();
        for (const t of tampered) {
          assert.ok(
            out
              .split('\n')
              .some((l) => l.includes('key row refused') && l.includes(t.keyId) && l.includes(t.reason)),
            `no log line for ${t.keyId} ${t.reason}`,
          );
        }
        assert.ok(out.split('\n').some((l) => l.includes('key row missing') && l.includes(deletedRow.id)));
        const audit = await daemon.cli(['--json', 'audit', 'tail', '--limit', '200']);
        assert.equal(audit.code, 0, audit.stderr);
        const records = JSON.parse(audit.stdout) as {
          type: string;
          scope: string;
          data: { keyId?: string };
        }[];
        for (const t of tampered) {
          assert.ok(
            records.some((r) => r.type === 'key.integrity-failed' && r.data.keyId === t.keyId),
            `no audit record for ${t.keyId}`,
          );
        }
        assert.ok(records.some((r) => r.type === 'key.row-missing' && r.data.keyId === deletedRow.id));
        const verify = await daemon.cli(['--json', 'keys', 'verify']);
        assert.equal(verify.code, 1);
        const v = JSON.parse(verify.stdout) as {
          refused: { keyId: string; reason: string }[];
          missingRows: { keyId: string }[];
        };
        for (const t of tampered)
          assert.ok(v.refused.some((r) => r.keyId === t.keyId && r.reason === t.reason));
        assert.deepEqual(
          v.missingRows.map((m) => m.keyId),
          [deletedRow.id],
        );
      });

      describe('after a restart (two workers)', () => {
        before(async () => {
          const port = new URL(daemon.baseUrl).port;
          await daemon.shutdown();
          restarted = await startServe(daemon.configPath, { port: Number(port), args: ['--workers', '2'] });
        });

        it('still accepts nothing forged, on every path', assertNothingAccepted);
        it('still never signs with a tampered key', assertNeverSignsTampered);
        it('reports the refused rows and the missing row from its first load', assertReadinessAndMetrics);
      });
    });
  }
});
