import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tailAudit } from '../../src/audit/query';
import { reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { scanForLeaks } from '../../src/lifecycle/scan-for-leaks';
import { timelineForNewKey } from '../../src/policy/timeline';
import type { KeyRecord } from '../../src/policy/key';
import { encodeSeal, sealInput } from '../../src/policy/key-seal';
import { runPlanter } from '../contract/pkcs11-fixture';
import { heapLike, makeKey, plantIn } from '../helpers/scan-fixtures';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

/**
 * I4 end to end: a key the store manages leaks (here: a software key imported into the token and
 * sealed like any managed key, since an HSM-born key's private half cannot be had), `scan
 * --revoke` finds it, revokes it with the finding as the reason (destroying it in the HSM), and
 * the JWKS drops it.
 */
describe('scan --revoke: a leaked managed key is found, revoked, and leaves the JWKS', function () {
  this.timeout(120_000);
  let t: TestRuntime;
  before(async () => {
    t = await startTestRuntime([{ name: 'consumer' }]);
    await reconcileScope(t.ctx, 'consumer');
  });
  after(async () => t.close());

  const jwksKids = () =>
    (
      JSON.parse(t.ctx.cache.jwks(t.ctx.cache.view('consumer')!).body) as { keys: { kid: string }[] }
    ).keys.map((k) => k.kid);

  it('revokes the matched key, records why, and a scan of clean data finds nothing', async () => {
    const leaked = await makeKey('P-256', 'consumer');
    const scope = t.config.scopes[0]!;
    const now = t.clock.now();
    const id = randomUUID();
    const backend = await t.ctx.backend('hsm');
    const ref = backend.planKey({ scope: 'consumer', keyId: id });
    // The key was made outside the HSM and imported (so a copy of it can exist elsewhere), then
    // registered and sealed as keywarden seals every key: a managed, trusted, published key.
    const jwk = leaked.privateJwk;
    const hex = (b64u: string | undefined) => Buffer.from(b64u!, 'base64url').toString('hex');
    await runPlanter(t.token, [
      {
        op: 'import-ec',
        label: ref.ref.label!,
        idHex: ref.ref.id!,
        dHex: hex(jwk.d),
        xHex: hex(jwk.x),
        yHex: hex(jwk.y),
      },
    ]);
    const row: KeyRecord = {
      id,
      kid: null,
      scope: 'consumer',
      alg: 'ES256',
      status: 'generating',
      backendRef: ref,
      publicJwk: null,
      ...timelineForNewKey(scope.policy, now, { immediate: true }),
      revokedAt: null,
      revokedReason: null,
      destroyedAt: null,
      createdAt: now,
      createdBy: 'test',
    };
    await t.ctx.keys.insertGenerating(row, now);
    const facts = { ...row, kid: leaked.known.kid, publicJwk: leaked.known.publicJwk };
    await backend.attachSeal(ref, encodeSeal(await backend.sign(ref, 'ES256', sealInput(facts))));
    await t.ctx.keys.completeGenerating(
      id,
      { kid: facts.kid, publicJwk: facts.publicJwk, backendRef: ref },
      now,
    );
    await t.ctx.cache.refresh(true);
    assert.ok(jwksKids().includes(leaked.known.kid), 'the imported, sealed key is published');

    const dir = t.token.dir;
    const clean = join(dir, 'clean.bin');
    await writeFile(clean, heapLike(1 << 20, 7));
    const none = await scanForLeaks(t.ctx, [clean], { revoke: true, actor: 'test' });
    assert.deepEqual(none.findings, []);
    assert.deepEqual(none.revoked, []);

    const dump = join(dir, 'core.bin');
    const offset = 123_457;
    await writeFile(
      dump,
      plantIn(heapLike(1 << 20, 3), offset, leaked.privateKey.export({ format: 'der', type: 'pkcs8' })),
    );
    const r = await scanForLeaks(t.ctx, [dump], { revoke: true, actor: 'test' });
    assert.deepEqual(
      r.findings.map((f) => [f.offset, f.encoding, f.match?.kid]),
      [[offset, 'der-pkcs8', leaked.known.kid]],
    );
    assert.deepEqual(
      r.revoked.map((x) => x.kid),
      [leaked.known.kid],
    );
    assert.ok(!jwksKids().includes(leaked.known.kid), 'the leaked key is still published');
    assert.equal(
      (await t.ctx.keys.findByKid(leaked.known.kid))?.revokedReason?.includes(`${dump} at offset ${offset}`),
      true,
    );
    const audit = await tailAudit(t.ctx, { kid: leaked.known.kid, limit: 50 });
    const revocation = audit.find((a) => a.type === 'key.revoked');
    assert.ok(revocation, 'no key.revoked audit record');
    assert.match(JSON.stringify(revocation), /found by scan/);
    // Findings never carry the private scalar.
    assert.ok(!JSON.stringify(r).includes(leaked.privateJwk.d!));

    // A second scan finds it again but has nothing left to revoke.
    const again = await scanForLeaks(t.ctx, [dump], { revoke: true, actor: 'test' });
    assert.equal(again.findings.length, 1);
    assert.deepEqual(again.revoked, []);
    assert.match(again.notRevoked[0]!.reason, /revoked/);
  });
});
