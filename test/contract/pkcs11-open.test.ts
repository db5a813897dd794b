import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describeToken, openPkcs11Backend } from '../../src/backends/pkcs11';
import { hasCode, KeywardenError, type ErrorCode } from '../../src/policy/errors';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { pkcs11Config } from './pkcs11-fixture';

/** Asserts the rejection code and that no secret leaked into the message chain. */
async function refusesWith(
  p: Promise<unknown>,
  code: ErrorCode,
  secrets: string[] = [],
): Promise<KeywardenError> {
  let caught: unknown;
  await p.then(
    (b) => assert.fail(`expected ${code}, opened ${String(b)}`),
    (e: unknown) => (caught = e),
  );
  assert.ok(hasCode(caught, code), `expected ${code}, got ${String(caught)}`);
  const err = caught as KeywardenError;
  let text = '';
  for (let e: unknown = err; e instanceof Error; e = e.cause) text += `${e.message}\n${String(e.stack)}\n`;
  for (const s of secrets) assert.equal(text.includes(s), false, 'a PIN appeared in the error');
  return err;
}

describe('openPkcs11Backend: refusing what cannot work, with typed errors', function () {
  this.timeout(60_000);
  let token: SoftHsmToken;

  before(async () => {
    token = await createSoftHsmToken();
  });

  after(async () => {
    await token?.cleanup();
  });

  it('BACKEND_MODULE_NOT_FOUND for a module path that does not exist', async () => {
    const missing = join(token.dir, 'no-such-libpkcs11.so');
    const err = await refusesWith(
      openPkcs11Backend(pkcs11Config(token, { module: missing })),
      'BACKEND_MODULE_NOT_FOUND',
    );
    assert.ok(err.message.includes(missing), 'the message names the path');
  });

  it('BACKEND_MODULE_NOT_FOUND for a shared library that is not a PKCS#11 module', async () => {
    const notPkcs11 = ['/lib/x86_64-linux-gnu/libz.so.1', '/usr/lib/x86_64-linux-gnu/libz.so.1'].find(
      existsSync,
    );
    assert.ok(notPkcs11, 'libz is present on every Debian system');
    await refusesWith(
      openPkcs11Backend(pkcs11Config(token, { module: notPkcs11 })),
      'BACKEND_MODULE_NOT_FOUND',
    );
  });

  it('BACKEND_TOKEN_NOT_FOUND for a token label the module does not have', async () => {
    await refusesWith(
      openPkcs11Backend(pkcs11Config(token, { tokenLabel: 'no-such-token' })),
      'BACKEND_TOKEN_NOT_FOUND',
    );
  });

  it('BACKEND_PIN_INCORRECT for a wrong PIN, without the PIN in any message', async () => {
    const wrong = 'wrong-pin-8c1f';
    await refusesWith(openPkcs11Backend(pkcs11Config(token, { pinValue: wrong })), 'BACKEND_PIN_INCORRECT', [
      wrong,
      token.pin,
    ]);
    await refusesWith(
      openPkcs11Backend(pkcs11Config(token, { pinValue: 'x'.repeat(300) })),
      'BACKEND_PIN_INCORRECT',
    );
  });

  it('BACKEND_PIN_INCORRECT for a wrong PIN even while another backend holds the login', async () => {
    const first = await openPkcs11Backend(pkcs11Config(token, { name: 'first' }));
    try {
      const wrong = 'other-wrong-pin-1';
      await refusesWith(
        openPkcs11Backend(pkcs11Config(token, { name: 'second', pinValue: wrong })),
        'BACKEND_PIN_INCORRECT',
        [wrong, token.pin],
      );
    } finally {
      await first.close();
    }
  });

  it('two backends on one token: closing one does not log the other out', async () => {
    let reopened = 0;
    const a = await openPkcs11Backend(pkcs11Config(token, { name: 'a', sessions: 1 }));
    const b = await openPkcs11Backend(pkcs11Config(token, { name: 'b', sessions: 1 }), {
      onSessionsReopened: () => (reopened += 1),
    });
    try {
      const ref = a.planKey({ scope: 's', keyId: 'k' });
      const now = new Date();
      await a.generate(ref, { alg: 'ES256', scope: 's', keyId: 'k', notBefore: now, notAfter: now });
      await a.close();
      const refB = { ...ref, backend: 'b' };
      assert.equal((await b.sign(refB, 'ES256', Buffer.from('a.b'))).length, 64);
      assert.equal((await b.health()).ok, true);
      await b.destroy(refB);
      assert.equal(reopened, 0, 'b must not have lost its login when a closed');
      await assert.rejects(a.sign(ref, 'ES256', Buffer.from('a.b')), (e) =>
        hasCode(e, 'BACKEND_UNAVAILABLE'),
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('refuses a second moduleEnv for a module already loaded, and a session count out of range', async () => {
    const a = await openPkcs11Backend(pkcs11Config(token));
    try {
      const otherEnv = { SOFTHSM2_CONF: join(token.dir, 'other.conf') };
      await refusesWith(
        openPkcs11Backend(pkcs11Config(token, { name: 'x', moduleEnv: otherEnv })),
        'BACKEND_ERROR',
      );
    } finally {
      await a.close();
    }
    await refusesWith(openPkcs11Backend(pkcs11Config(token, { sessions: 0 })), 'CONFIG_INVALID');
  });

  it('describeToken needs no PIN and lists the token with its mechanisms', () => {
    const d = describeToken({ module: token.modulePath, moduleEnv: token.env, tokenLabel: token.tokenLabel });
    assert.equal(d.token?.token?.label, token.tokenLabel);
    assert.equal(d.token?.token?.userPinInitialized, true);
    assert.equal(d.token?.token?.algorithms.EdDSA, true);
    assert.ok(
      d.slots.some((s) => s.token?.initialized === false),
      'SoftHSM always offers a free slot',
    );
    assert.throws(
      () => describeToken({ module: '/nonexistent/lib.so', moduleEnv: {} }),
      (e) => hasCode(e, 'BACKEND_MODULE_NOT_FOUND'),
    );
  });

  it('close lets signatures already on the token finish and refuses the queued ones', async () => {
    const b = await openPkcs11Backend(pkcs11Config(token, { sessions: 2 }));
    const ref = b.planKey({ scope: 's', keyId: 'closing' });
    const now = new Date();
    await b.generate(ref, { alg: 'RS256', scope: 's', keyId: 'closing', notBefore: now, notAfter: now });
    const pending = Array.from({ length: 40 }, (_, i) =>
      b.sign(ref, 'RS256', Buffer.from(`c.${i}`)).then(
        (sig) => sig.length,
        (e: unknown) => (hasCode(e, 'BACKEND_UNAVAILABLE') ? 'refused' : e),
      ),
    );
    await new Promise((r) => setImmediate(r));
    await b.close();
    const outcomes = await Promise.all(pending);
    assert.ok(outcomes.includes(256), 'the signatures in flight completed');
    assert.ok(outcomes.includes('refused'), 'queued signatures were refused');
    assert.deepEqual(
      outcomes.filter((o) => o !== 256 && o !== 'refused'),
      [],
    );
    const again = await openPkcs11Backend(pkcs11Config(token));
    await again.destroy(ref);
    await again.close();
  });

  it('health never throws: a closed backend reports not ok', async () => {
    const b = await openPkcs11Backend(pkcs11Config(token));
    await b.close();
    const h = await b.health();
    assert.equal(h.ok, false);
    assert.match(h.detail, /closed/);
  });
});
