/**
 * Rotation as relying parties see it: a running daemon with a policy in seconds rotates at
 * least three times while two independent consumers, `jose` (createRemoteJWKSet) and
 * `jsonwebtoken` + `jwks-rsa`, verify every token the sign route issues, right away and again
 * shortly before it expires. Zero valid tokens may fail, and signing may never find the scope
 * without a key: pre-publication and on-time successors are what make that true.
 */
import * as assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import jwt from 'jsonwebtoken';
import { JwksClient } from 'jwks-rsa';
import pino from 'pino';
import { loadConfig } from '../../src/config/load-config';
import { addClient } from '../../src/lifecycle/clients';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { openRuntime, storeAuditLog } from '../../src/main';
import { freePort, startServe, type ServeProcess } from '../helpers/daemon';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const SCOPE = 'rotating';
const ACTIVE_FOR_MS = 4000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('rotation seen by real JWKS consumers (e2e: keywarden serve)', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  let daemon: ServeProcess;
  let secret: string;
  let issuer: string;
  let jwksUrl: string;
  let configPath: string;

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    const port = await freePort();
    const baseUrl = `http://127.0.0.1:${port}`;
    issuer = `${baseUrl}/scopes/${SCOPE}`;
    jwksUrl = `${issuer}/.well-known/jwks.json`;
    const doc = testConfigDocument(
      token,
      [
        {
          name: SCOPE,
          issuer,
          schedule: '* * * * * *', // the cron package takes a seconds field
          policy: {
            jwksMaxAge: '1s',
            prepublish: '3s',
            activeFor: '4s',
            verifyGrace: '3s',
            maxTokenTtl: '3s',
            destroyAfter: '1m',
            maxKeyLifetime: '1m',
          },
        },
      ],
      { logLevel: 'warn', server: { keyRefreshSeconds: 1 } },
    );
    configPath = join(token.dir, 'keywarden.yaml');
    await writeFile(configPath, JSON.stringify(doc, null, 2), { mode: 0o600 });
    // `keywarden init` and `clients add`, in this process (saves two CLI starts).
    const config = loadConfig(configPath);
    const rt = await openRuntime(config, {
      log: pino({ level: 'silent' }),
      audit: storeAuditLog(),
    });
    try {
      await reconcileAll(rt.ctx, 'test');
      secret = (await addClient(rt.ctx, 'issuer', { [SCOPE]: ['sign'] }, 'test')).secret;
    } finally {
      await rt.close();
    }
    daemon = await startServe(configPath, { port });
  });
  after(async () => {
    await daemon?.stop();
    await token?.cleanup();
  });

  it('zero failed verifications and zero failed signs through at least 3 rotations', async () => {
    // jose honours the JWKS max-age (1 s) and, within its cooldown, does NOT refetch on an
    // unknown kid: so a kid that signs before it was published fails here.
    const joseKeys = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: 1000, cooldownDuration: 30_000 });
    const jwksRsa = new JwksClient({ jwksUri: jwksUrl, cache: true, cacheMaxAge: 1000 });
    const viaJose = async (t: string) =>
      jwtVerify(t, joseKeys, { issuer, audience: `${SCOPE}-api`, algorithms: ['ES256'] });
    const viaJsonwebtoken = async (t: string) => {
      const key = await jwksRsa.getSigningKey(decodeProtectedHeader(t).kid);
      return jwt.verify(t, key.getPublicKey(), { issuer, audience: `${SCOPE}-api`, algorithms: ['ES256'] });
    };

    const failures: string[] = [];
    const kids: string[] = [];
    const pending: { token: string; recheckAt: number }[] = [];
    let verified = 0;
    let tooLate = 0;
    const check = async (t: string, when: string) => {
      const expMs = decodeJwt(t).exp! * 1000;
      for (const [name, verify] of [
        ['jose', viaJose],
        ['jsonwebtoken+jwks-rsa', viaJsonwebtoken],
      ] as const) {
        try {
          await verify(t);
          verified++;
        } catch (e) {
          // On a busy machine a check can finish after exp: then the token is no longer valid.
          if (Date.now() >= expMs) tooLate++;
          else
            failures.push(`${name} (${when}) kid ${decodeProtectedHeader(t).kid}: ${(e as Error).message}`);
        }
      }
    };

    const start = Date.now();
    while (Date.now() - start < 3.5 * ACTIVE_FOR_MS + 1000) {
      const r = await fetch(`${daemon.baseUrl}/v1/scopes/${SCOPE}/sign`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        body: JSON.stringify({ claims: { sub: 'alice', aud: `${SCOPE}-api` } }),
      });
      const body = (await r.json()) as { token?: string; kid?: string };
      if (r.status !== 200 || !body.token) {
        failures.push(`sign ${r.status}: ${JSON.stringify(body)}`);
      } else {
        if (kids[kids.length - 1] !== body.kid) kids.push(body.kid!);
        await check(body.token, 'fresh');
        // Again about a second before it expires (exp = iat in whole seconds + 3 s).
        pending.push({ token: body.token, recheckAt: decodeJwt(body.token).exp! * 1000 - 1000 });
      }
      while (pending[0] && pending[0].recheckAt <= Date.now()) await check(pending.shift()!.token, 'aged');
      await sleep(100);
    }
    for (const p of pending) {
      await sleep(Math.max(0, p.recheckAt - Date.now()));
      await check(p.token, 'aged');
    }
    assert.deepEqual(failures, [], `${daemon.output()}`);
    assert.ok(kids.length >= 4, `only ${kids.length} signing keys seen: ${kids.join(', ')}`);
    assert.equal(new Set(kids).size, kids.length, 'a key signed again after its successor took over');
    assert.ok(verified > 100, `${verified} verifications`);
    assert.ok(tooLate < verified / 20, `${tooLate} checks only finished after exp`);

    // The daemon's rows: each successor took over exactly as its predecessor retired (a late
    // reconcile must not open a gap, which catch-up would fill with an unpublished key).
    const config = loadConfig(configPath);
    const rt = await openRuntime(config, { log: pino({ level: 'silent' }) });
    try {
      const keys = (await rt.ctx.keys.listByScope(SCOPE)).filter((k) => k.status === 'ready');
      keys.sort((a, b) => a.activateAt.getTime() - b.activateAt.getTime());
      assert.ok(keys.length >= 4);
      for (let i = 1; i < keys.length; i++) {
        const gapMs = keys[i]!.activateAt.getTime() - keys[i - 1]!.retireAt.getTime();
        assert.equal(gapMs, 0, `key ${i} activated ${gapMs} ms after its predecessor retired`);
      }
    } finally {
      await rt.close();
    }
  });
});
