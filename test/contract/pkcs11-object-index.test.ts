/**
 * The PKCS#11 backend's per-process object index (src/backends/pkcs11/object-index.ts): keys this
 * process made are found without searching the token (SoftHSM2 reads every object on each
 * C_FindObjects), and a key another real process destroyed or replaced is never signed with nor
 * reported from the index: each path drops the stale entry and searches once.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openPkcs11Backend, type Pkcs11Backend } from '../../src/backends/pkcs11';
import type { Pkcs11BackendConfig } from '../../src/backends/pkcs11/config';
import { Cryptoki } from '../../src/backends/pkcs11/cryptoki';
import { hasCode } from '../../src/policy/errors';
import type { BackendRef, PublicJwk } from '../../src/policy/key';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { nodeVerify } from './key-backend.contract';
import { SEAL_APPLICATION } from '../../src/backends/pkcs11/seal-objects';
import { dropAllSessions, pkcs11Config, runPlanter } from './pkcs11-fixture';

const run = promisify(execFile);

describe('PKCS#11 object index: known keys without searching, and another process destroying them', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  let config: Pkcs11BackendConfig & { pinValue: string };
  let backend: Pkcs11Backend;
  let finds = 0;

  /** The other keywarden process (test/contract/pkcs11-index-peer.ts): destroys, or destroys and re-makes. */
  async function peer(action: 'destroy' | 'replace', refs: BackendRef[]): Promise<PublicJwk[]> {
    const { stdout } = await run(
      process.execPath,
      [
        '--require',
        require.resolve('tsx/cjs'),
        join(__dirname, 'pkcs11-index-peer.ts'),
        action,
        JSON.stringify(config),
        JSON.stringify(refs),
      ],
      { timeout: 120_000 },
    );
    return JSON.parse(stdout) as PublicJwk[];
  }

  /** A sealed ES256 key made (and so indexed) by this process. */
  async function sealedKey(): Promise<{ ref: BackendRef; jwk: PublicJwk }> {
    const keyId = randomUUID();
    const ref = backend.planKey({ scope: 'indexed', keyId });
    const now = Date.now();
    const { publicJwk } = await backend.generate(ref, {
      alg: 'ES256',
      scope: 'indexed',
      keyId,
      notBefore: new Date(now),
      notAfter: new Date(now + 3.6e6),
    });
    await backend.attachSeal(ref, Buffer.from(`v1.${keyId}`));
    return { ref, jwk: publicJwk };
  }

  before(async () => {
    token = await createSoftHsmToken();
    config = pkcs11Config(token, {
      sessions: 2,
      objectLock: { file: join(token.dir, 'objects.lock'), required: true },
    });
    backend = await openPkcs11Backend(config);
    // SoftHSM2 answers every C_FindObjects by reading every object on the token: counted here.
    const ck = (backend as unknown as { ck: Cryptoki }).ck;
    const find = ck.findObjects.bind(ck);
    ck.findObjects = (session, template) => {
      finds++;
      return find(session, template);
    };
  });

  after(async () => {
    await backend?.close();
    await token?.cleanup();
  });

  it('answers for a key it made without searching the token: sign, public key, exists, inspection', async () => {
    const { ref, jwk } = await sealedKey();
    finds = 0;
    const input = Buffer.from('e30.e30');
    assert.equal(nodeVerify('ES256', jwk, input, await backend.sign(ref, 'ES256', input)), true);
    assert.deepEqual(await backend.publicKey(ref, 'ES256'), jwk);
    assert.equal(await backend.exists(ref), true);
    const [inspected] = await backend.inspectKeys([{ ref, alg: 'ES256' }]);
    assert.ok(inspected?.status === 'found', JSON.stringify(inspected));
    assert.deepEqual(inspected.facts.publicJwk, jwk);
    assert.deepEqual(inspected.facts.seal, Buffer.from(`v1.${String(ref.ref.label).split(':')[2]}`));
    await assert.rejects(backend.attachSeal(ref, Buffer.from('v1.again')), (e) =>
      hasCode(e, 'BACKEND_OBJECT_EXISTS'),
    );
    await assert.rejects(
      backend.generate(ref, {
        alg: 'ES256',
        scope: 'indexed',
        keyId: String(ref.ref.label).split(':')[2] as string,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + 3.6e6),
      }),
      (e) => hasCode(e, 'BACKEND_OBJECT_EXISTS'),
    );
    assert.equal(finds, 0, `searched the token ${finds} time(s) for a key this process made`);
  });

  it('never signs with, nor reports, keys another process destroyed: each lookup searches once and finds nothing', async () => {
    const keys = await Promise.all(Array.from({ length: 6 }, () => sealedKey()));
    for (const k of keys) await backend.sign(k.ref, 'ES256', Buffer.from('warm.index'));
    await peer(
      'destroy',
      keys.map((k) => k.ref),
    );
    const [signed, exists, publicKey, inspected, sealed] = keys;
    const notFound = (e: unknown) => hasCode(e, 'BACKEND_OBJECT_NOT_FOUND');
    finds = 0;
    await assert.rejects(backend.sign(signed!.ref, 'ES256', Buffer.from('a.b')), notFound);
    assert.ok(finds >= 1, 'signing searched the token after the kept handle failed');
    assert.equal(await backend.exists(exists!.ref), false);
    await assert.rejects(backend.publicKey(publicKey!.ref, 'ES256'), notFound);
    assert.deepEqual(
      (await backend.inspectKeys([{ ref: inspected!.ref, alg: 'ES256' }])).map((a) => a.status),
      ['missing'],
    );
    await assert.rejects(backend.attachSeal(sealed!.ref, Buffer.from('v1.x')), notFound);
    // A listing drops what the token no longer holds: the last key is then missing as well.
    const listed = new Set((await backend.inventory()).map((e) => e.identity));
    assert.equal(listed.has(backend.refIdentity(keys[5]!.ref)), false);
    assert.deepEqual(
      (await backend.inspectKeys([{ ref: keys[5]!.ref, alg: 'ES256' }])).map((a) => a.status),
      ['missing'],
    );
  });

  it('signs with the key another process made in place of a destroyed one (same CKA_ID), never the old one', async () => {
    const old = await sealedKey();
    const input = Buffer.from('before.replacement');
    assert.equal(nodeVerify('ES256', old.jwk, input, await backend.sign(old.ref, 'ES256', input)), true);
    const [replacement] = await peer('replace', [old.ref]);
    assert.ok(replacement && replacement.x !== old.jwk.x, 'the other process made a new key pair');
    const after = Buffer.from('after.replacement');
    const sig = await backend.sign(old.ref, 'ES256', after);
    assert.equal(nodeVerify('ES256', replacement, after, sig), true, 'signed with the replacement');
    assert.equal(nodeVerify('ES256', old.jwk, after, sig), false, 'not with the destroyed key');
    assert.deepEqual(await backend.publicKey(old.ref, 'ES256'), replacement);
    const [inspected] = await backend.inspectKeys([{ ref: old.ref, alg: 'ES256' }]);
    assert.ok(inspected?.status === 'found');
    assert.deepEqual(inspected.facts.publicJwk, replacement);
    assert.equal(inspected.facts.seal, null, "the old key's seal went with it");
  });

  it('a seal another process planted for a key this process just made: the key is refused at the next listing', async () => {
    const keyId = randomUUID();
    const ref = backend.planKey({ scope: 'indexed', keyId });
    const now = Date.now();
    await backend.generate(ref, {
      alg: 'ES256',
      scope: 'indexed',
      keyId,
      notBefore: new Date(now),
      notAfter: new Date(now + 3.6e6),
    });
    const label = String(ref.ref.label);
    await runPlanter(token, [
      {
        op: 'data',
        label,
        application: SEAL_APPLICATION,
        valueHex: Buffer.from('v1.planted').toString('hex'),
      },
    ]);
    await backend.attachSeal(ref, Buffer.from('v1.mine'));
    // The listing (every key reload runs one before inspecting) sees two seals for one label.
    await backend.inventory();
    const [inspected] = await backend.inspectKeys([{ ref, alg: 'ES256' }]);
    assert.equal(inspected?.status, 'unreadable', JSON.stringify(inspected));
    assert.match(inspected.status === 'unreadable' ? inspected.problem : '', /2 seal objects/);
  });

  it('makes and seals a key whose CKA_ID this process drew without searching the token', async () => {
    finds = 0;
    const { ref, jwk } = await sealedKey();
    assert.equal(finds, 0, `searched the token ${finds} time(s) to make a key this process planned`);
    const input = Buffer.from('drawn.here');
    assert.equal(nodeVerify('ES256', jwk, input, await backend.sign(ref, 'ES256', input)), true);
  });

  it('searches for a CKA_ID it did not draw (a leftover, a ref from the store): another process made it, so no key is made over it', async () => {
    const keyId = randomUUID();
    // Drawn by another process's plan (as a leftover of a crashed daemon's, or a row's ref).
    const other = await openPkcs11Backend(config);
    const ref = other.planKey({ scope: 'indexed', keyId });
    await other.close();
    await runPlanter(token, [
      { op: 'keypair', keyType: 'EC', label: String(ref.ref.label), idHex: String(ref.ref.id) },
    ]);
    finds = 0;
    const now = Date.now();
    await assert.rejects(
      backend.generate(ref, {
        alg: 'ES256',
        scope: 'indexed',
        keyId,
        notBefore: new Date(now),
        notAfter: new Date(now + 3.6e6),
      }),
      (e) => hasCode(e, 'BACKEND_OBJECT_EXISTS'),
    );
    assert.equal(finds, 1, 'the CKA_ID was not searched for');
  });

  it('forgets every handle when the sessions are re-opened: the next lookup searches the token', async () => {
    const { ref, jwk } = await sealedKey();
    finds = 0;
    await backend.publicKey(ref, 'ES256');
    assert.equal(finds, 0);
    // Close every session of the token behind the backend's back (as a token hiccup does).
    dropAllSessions(token);
    const input = Buffer.from('after.reopen');
    assert.equal(nodeVerify('ES256', jwk, input, await backend.sign(ref, 'ES256', input)), true);
    assert.ok(finds >= 1, 'the index was not cleared when the sessions were re-opened');
    finds = 0;
    assert.deepEqual(await backend.publicKey(ref, 'ES256'), jwk);
    assert.equal(finds, 1, 'the public key was searched for once after the re-open, then known');
  });
});
