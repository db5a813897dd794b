import { strict as assert } from 'node:assert';
import { constants, createPublicKey, randomBytes, randomUUID, verify } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, importJWK, type JWK } from 'jose';
import type { KeyBackend } from '../../src/backends/key-backend';
import type { SigningAlg } from '../../src/policy/algorithms';
import { hasCode, type ErrorCode } from '../../src/policy/errors';
import type { BackendRef, PublicJwk } from '../../src/policy/key';

/** What a backend's test hands the contract: a ready backend, the algorithms it must pass, a teardown. */
export interface ContractFixture {
  backend: KeyBackend;
  algs: readonly SigningAlg[];
  teardown(): Promise<void>;
}

interface MadeKey {
  ref: BackendRef;
  jwk: PublicJwk;
  keyId: string;
  scope: string;
}

/** Members a public JWK may carry, per kty; everything else (d, p, q, ...) is a leak. */
const PUBLIC_MEMBERS: Readonly<Record<PublicJwk['kty'], readonly string[]>> = {
  EC: ['kty', 'crv', 'x', 'y'],
  RSA: ['kty', 'n', 'e'],
  OKP: ['kty', 'crv', 'x'],
};
const EXPECTED_KEY: Readonly<Record<SigningAlg, { kty: PublicJwk['kty']; crv?: string; sigBytes?: number }>> =
  {
    ES256: { kty: 'EC', crv: 'P-256', sigBytes: 64 },
    ES384: { kty: 'EC', crv: 'P-384', sigBytes: 96 },
    RS256: { kty: 'RSA' },
    PS256: { kty: 'RSA' },
    EdDSA: { kty: 'OKP', crv: 'Ed25519', sigBytes: 64 },
  };
/** RSA size the contract asks for per alg: PS256 exercises `rsaBits`, RS256 the default (2048). */
const RSA_BITS: Partial<Record<SigningAlg, 3072>> = { PS256: 3072 };

const b64u = (v: string | Uint8Array): string => Buffer.from(v).toString('base64url');

/** Verifies a JWS signature with Node's crypto, independent of the backend. */
export function nodeVerify(alg: SigningAlg, jwk: PublicJwk, data: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({ key: { ...jwk }, format: 'jwk' });
  switch (alg) {
    case 'ES256':
      return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'ES384':
      return verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'RS256':
      return verify('sha256', data, key, sig);
    case 'PS256':
      return verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
    case 'EdDSA':
      return verify(null, data, key, sig);
  }
}

/** A copy of `b` with the lowest bit of byte `i` flipped. */
function flipBit(b: Uint8Array, i: number): Buffer {
  const out = Buffer.from(b);
  out.writeUInt8(out.readUInt8(i) ^ 0x01, i);
  return out;
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => hasCode(e, code), `${what}: expected ${code}`);
}

/**
 * The one contract suite every KeyBackend runs (SoftHSM2, the Key Vault protocol server, ...).
 * It knows nothing backend-specific: everything it checks is observable through KeyBackend.
 */
export function describeKeyBackendContract(label: string, setup: () => Promise<ContractFixture>): void {
  describe(`KeyBackend contract: ${label}`, function () {
    this.timeout(120_000);
    const scope = `contract${randomUUID().slice(0, 8)}`;
    let fx: ContractFixture | undefined;
    const made = new Map<SigningAlg, MadeKey>();
    const toDestroy: BackendRef[] = [];

    const fixture = (): ContractFixture => {
      assert.ok(fx, 'fixture setup failed');
      return fx;
    };

    async function newKey(alg: SigningAlg): Promise<MadeKey> {
      const { backend } = fixture();
      const keyId = randomUUID();
      const ref = backend.planKey({ scope, keyId });
      toDestroy.push(ref);
      const now = Date.now();
      const generated = await backend.generate(ref, {
        alg,
        rsaBits: RSA_BITS[alg],
        scope,
        keyId,
        notBefore: new Date(now),
        notAfter: new Date(now + 86_400_000),
      });
      return { ref: generated.ref, jwk: generated.publicJwk, keyId, scope };
    }

    /** One long-lived key per alg, made on first use so each test also runs alone (--grep). */
    async function keyFor(alg: SigningAlg): Promise<MadeKey> {
      const existing = made.get(alg);
      if (existing) return existing;
      const k = await newKey(alg);
      made.set(alg, k);
      return k;
    }

    async function signJws(
      alg: SigningAlg,
      k: MadeKey,
      sub: string,
    ): Promise<{ input: Buffer; sig: Uint8Array }> {
      const kid = await calculateJwkThumbprint(k.jwk as JWK);
      const header = b64u(JSON.stringify({ alg, kid, typ: 'JWT' }));
      const payload = b64u(JSON.stringify({ sub, iat: 1_700_000_000 }));
      const input = Buffer.from(`${header}.${payload}`, 'ascii');
      return { input, sig: await fixture().backend.sign(k.ref, alg, input) };
    }

    before(async () => {
      fx = await setup();
      assert.ok(fx.algs.length > 0, 'a contract fixture must name at least one algorithm');
    });

    after(async () => {
      if (!fx) return;
      for (const ref of toDestroy) await fx.backend.destroy(ref).catch(() => undefined);
      await fx.teardown();
    });

    it('planKey addresses a new key without touching the backend', async () => {
      const { backend } = fixture();
      const before = (await backend.list()).length;
      const a = backend.planKey({ scope, keyId: randomUUID() });
      const b = backend.planKey({ scope, keyId: randomUUID() });
      assert.equal(a.backend, backend.name);
      assert.notDeepEqual(a.ref, b.ref, 'two plans must address two keys');
      assert.equal(await backend.exists(a), false, 'a planned key must not exist yet');
      assert.equal((await backend.list()).length, before, 'planKey must not create objects');
    });

    it('a planned key that was never generated: not found for sign/publicKey, destroy is a no-op', async () => {
      const { backend, algs } = fixture();
      const alg = algs[0] as SigningAlg;
      const ref = backend.planKey({ scope, keyId: randomUUID() });
      await rejectsWith(backend.sign(ref, alg, Buffer.from('x.y')), 'BACKEND_OBJECT_NOT_FOUND', 'sign');
      await rejectsWith(backend.publicKey(ref, alg), 'BACKEND_OBJECT_NOT_FOUND', 'publicKey');
      await backend.destroy(ref);
      assert.equal(await backend.exists(ref), false);
    });

    it('generate returns a public JWK of the right type with public members only', async () => {
      const { backend, algs } = fixture();
      for (const alg of algs) {
        const k = await keyFor(alg);
        const want = EXPECTED_KEY[alg];
        assert.equal(k.jwk.kty, want.kty, `${alg}: kty`);
        assert.equal(k.jwk.crv, want.crv, `${alg}: crv`);
        const extra = Object.keys(k.jwk).filter((m) => !PUBLIC_MEMBERS[k.jwk.kty].includes(m));
        assert.deepEqual(extra, [], `${alg}: non-public JWK members`);
        if (want.kty === 'RSA') {
          const bits = Buffer.from(k.jwk.n ?? '', 'base64url').length * 8;
          assert.equal(bits, RSA_BITS[alg] ?? 2048, `${alg}: modulus size`);
        }
        assert.match(await calculateJwkThumbprint(k.jwk as JWK), /^[A-Za-z0-9_-]{43}$/, `${alg}: thumbprint`);
        assert.deepEqual(await backend.publicKey(k.ref, alg), k.jwk, `${alg}: publicKey() equals generate()`);
        assert.equal(await backend.exists(k.ref), true, `${alg}: exists after generate`);
      }
    });

    it('signatures verify with Node crypto and as a compact JWS in jose', async () => {
      for (const alg of fixture().algs) {
        const k = await keyFor(alg);
        const { input, sig } = await signJws(alg, k, `verify-${alg}`);
        const want = EXPECTED_KEY[alg].sigBytes ?? Buffer.from(k.jwk.n ?? '', 'base64url').length;
        assert.equal(sig.length, want, `${alg}: signature length`);
        assert.equal(nodeVerify(alg, k.jwk, input, sig), true, `${alg}: Node crypto rejected the signature`);
        const jws = `${input.toString('ascii')}.${b64u(sig)}`;
        const res = await compactVerify(jws, await importJWK(k.jwk as JWK, alg));
        assert.equal(res.protectedHeader.alg, alg);
        assert.equal(JSON.parse(Buffer.from(res.payload).toString('utf8')).sub, `verify-${alg}`);
      }
    });

    it('a tampered signing input or signature does not verify', async () => {
      for (const alg of fixture().algs) {
        const k = await keyFor(alg);
        const { input, sig } = await signJws(alg, k, `tamper-${alg}`);
        const tampered = flipBit(input, input.length - 2);
        assert.equal(nodeVerify(alg, k.jwk, tampered, sig), false, `${alg}: tampered input verified`);
        const badSig = flipBit(sig, sig.length >> 1);
        assert.equal(nodeVerify(alg, k.jwk, input, badSig), false, `${alg}: tampered signature verified`);
        const [h] = input.toString('ascii').split('.');
        const forged = `${h}.${b64u(JSON.stringify({ sub: 'admin', iat: 1_700_000_000 }))}.${b64u(sig)}`;
        await assert.rejects(compactVerify(forged, await importJWK(k.jwk as JWK, alg)), `${alg}: forged JWS`);
      }
    });

    it('list reports each key with its scope and keyId, never as extractable', async () => {
      const { backend, algs } = fixture();
      const keys = await Promise.all(algs.map((alg) => keyFor(alg)));
      const listed = await backend.list();
      for (const [i, k] of keys.entries()) {
        const mine = listed.filter((o) => o.keyId === k.keyId);
        assert.ok(mine.length > 0, `${algs[i]}: key ${k.keyId} missing from list()`);
        for (const o of mine) {
          assert.equal(o.scope, k.scope);
          assert.equal(o.ref.backend, backend.name);
          assert.equal(await backend.exists(o.ref), true, `${algs[i]}: listed ref does not resolve`);
          if (o.kind !== 'public') {
            assert.notEqual(o.attributes.extractable, true, `${algs[i]}: private key reported extractable`);
            assert.notEqual(o.attributes.sensitive, false, `${algs[i]}: private key reported not sensitive`);
          }
        }
      }
    });

    it('20 concurrent signatures all verify', async () => {
      for (const alg of fixture().algs) {
        const k = await keyFor(alg);
        const inputs = Array.from({ length: 20 }, (_, i) =>
          Buffer.from(`${b64u('{}')}.${b64u(`n${i}-${alg}`)}`),
        );
        const sigs = await Promise.all(inputs.map((input) => fixture().backend.sign(k.ref, alg, input)));
        sigs.forEach((sig, i) => {
          assert.equal(nodeVerify(alg, k.jwk, inputs[i] as Buffer, sig), true, `${alg}: signature ${i}`);
        });
      }
    });

    it('keeps a key seal beside the key, once; inventory and inspectKeys report it', async () => {
      const { backend, algs } = fixture();
      const alg = algs[0] as SigningAlg;
      const k = await newKey(alg);
      const identity = backend.refIdentity(k.ref);
      assert.equal(
        identity,
        backend.refIdentity({ ...k.ref, ref: { ...k.ref.ref } }),
        'refIdentity is stable',
      );
      const before = (await backend.inventory()).find((e) => e.identity === identity);
      assert.ok(before, 'inventory lists a new key');
      assert.deepEqual([before.keyId, before.scope, before.sealed], [k.keyId, scope, false]);
      const [unsealed] = await backend.inspectKeys([{ ref: k.ref, alg }]);
      assert.ok(unsealed?.status === 'found', JSON.stringify(unsealed));
      assert.equal(unsealed.facts.seal, null);
      assert.deepEqual(unsealed.facts.publicJwk, k.jwk);
      assert.deepEqual([unsealed.facts.keyId, unsealed.facts.scope], [k.keyId, scope]);
      assert.ok(
        unsealed.facts.validity.notBefore && unsealed.facts.validity.notAfter,
        'the validity recorded at creation',
      );

      const seal = Buffer.from(`v1.${b64u(randomBytes(64))}`, 'ascii');
      await backend.attachSeal(k.ref, seal);
      await rejectsWith(
        backend.attachSeal(k.ref, Buffer.from('v1.other')),
        'BACKEND_OBJECT_EXISTS',
        'second seal',
      );
      const [sealed] = await backend.inspectKeys([{ ref: k.ref, alg }]);
      assert.ok(sealed?.status === 'found');
      assert.deepEqual(Buffer.from(sealed.facts.seal ?? []), seal, 'the seal reads back as written');
      assert.equal((await backend.inventory()).find((e) => e.identity === identity)?.sealed, true);

      // Many keys in one pass, in the order asked; a planned and a destroyed key are missing.
      const planned = backend.planKey({ scope, keyId: randomUUID() });
      const gone = await newKey(alg);
      await backend.destroy(gone.ref);
      const answers = await backend.inspectKeys([
        { ref: planned, alg },
        { ref: k.ref, alg },
        { ref: gone.ref, alg },
      ]);
      assert.deepEqual(
        answers.map((a) => a.status),
        ['missing', 'found', 'missing'],
      );
      await rejectsWith(
        backend.attachSeal(planned, seal),
        'BACKEND_OBJECT_NOT_FOUND',
        'seal of a missing key',
      );
      // Destroying a key takes its seal with it: nothing of it stays to vouch for a row.
      await backend.destroy(k.ref);
      assert.equal(
        (await backend.inventory()).some((e) => e.identity === identity),
        false,
      );
      const [after] = await backend.inspectKeys([{ ref: k.ref, alg }]);
      assert.equal(after?.status, 'missing');
    });

    it('destroy with an owner destroys only a key made for that row: never one labelled for another', async () => {
      const { backend, algs } = fixture();
      const alg = algs[0] as SigningAlg;
      const k = await newKey(alg);
      // A row that points at this key but is not the row it was made for (a reference the store changed).
      await backend.destroy(k.ref, randomUUID());
      assert.equal(await backend.exists(k.ref), true, 'another row destroyed this key');
      assert.equal((await backend.inspectKeys([{ ref: k.ref, alg }]))[0]?.status, 'found');
      await backend.destroy(k.ref, k.keyId);
      assert.equal(await backend.exists(k.ref), false, 'its own row could not destroy it');
      // A planned key that was never made is no error for its owner either.
      await backend.destroy(backend.planKey({ scope, keyId: k.keyId }), k.keyId);
    });

    it('health reports ok', async () => {
      const h = await fixture().backend.health();
      assert.equal(h.ok, true, h.detail);
      assert.equal(typeof h.detail, 'string');
    });

    it('destroy removes the key for good; destroying again is not an error', async () => {
      const { backend, algs } = fixture();
      for (const alg of algs) {
        const k = await newKey(alg);
        assert.notEqual(
          k.jwk.x ?? k.jwk.n,
          (await keyFor(alg)).jwk.x ?? (await keyFor(alg)).jwk.n,
          'fresh key',
        );
        assert.equal(await backend.exists(k.ref), true);
        await backend.destroy(k.ref);
        assert.equal(await backend.exists(k.ref), false, `${alg}: exists after destroy`);
        await rejectsWith(
          backend.sign(k.ref, alg, Buffer.from('a.b')),
          'BACKEND_OBJECT_NOT_FOUND',
          `${alg} sign`,
        );
        await rejectsWith(backend.publicKey(k.ref, alg), 'BACKEND_OBJECT_NOT_FOUND', `${alg} publicKey`);
        await backend.destroy(k.ref);
        const listed = await backend.list();
        assert.equal(listed.filter((o) => o.keyId === k.keyId).length, 0, `${alg}: listed after destroy`);
      }
    });
  });
}
