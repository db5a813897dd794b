import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { openPkcs11Backend, type Pkcs11Backend } from '../../src/backends/pkcs11';
import { Cryptoki } from '../../src/backends/pkcs11/cryptoki';
import type { SigningAlg } from '../../src/policy/algorithms';
import { hasCode } from '../../src/policy/errors';
import type { BackendRef, PublicJwk } from '../../src/policy/key';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { nodeVerify } from './key-backend.contract';
import { dropAllSessions, pkcs11Config, pkcs11Tool } from './pkcs11-fixture';

/** pkcs11-tool arguments that make a P-256 pair with CKA_ID `id` (hex), as another process would. */
const keypairgenArgs = (id: string, label = 'replacement') => [
  '--keypairgen',
  '--key-type',
  'EC:prime256v1',
  '--id',
  id,
  '--label',
  label,
];

describe('Pkcs11Backend on SoftHSM2: sessions, other processes and the event loop', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  let backend: Pkcs11Backend;
  let reopened = 0;

  async function makeKey(alg: SigningAlg, scope = 'sessions'): Promise<{ ref: BackendRef; jwk: PublicJwk }> {
    const keyId = randomUUID();
    const ref = backend.planKey({ scope, keyId });
    const now = Date.now();
    const g = await backend.generate(ref, {
      alg,
      scope,
      keyId,
      notBefore: new Date(now),
      notAfter: new Date(now + 3.6e6),
    });
    return { ref, jwk: g.publicJwk };
  }

  before(async () => {
    token = await createSoftHsmToken();
    backend = await openPkcs11Backend(pkcs11Config(token, { sessions: 3 }), {
      onSessionsReopened: () => (reopened += 1),
    });
  });

  after(async () => {
    await backend?.close();
    await token?.cleanup();
  });

  it('finds and signs with a key another process created after start-up, after a lookup miss', async () => {
    const keyId = randomUUID();
    const ref = backend.planKey({ scope: 'other', keyId });
    const id = ref.ref.id as string;
    await assert.rejects(backend.sign(ref, 'ES256', Buffer.from('a.b')), (e) =>
      hasCode(e, 'BACKEND_OBJECT_NOT_FOUND'),
    );
    await pkcs11Tool(token, keypairgenArgs(id, ref.ref.label as string));
    const input = Buffer.from('e30.e30');
    const sig = await backend.sign(ref, 'ES256', input);
    assert.equal(nodeVerify('ES256', await backend.publicKey(ref, 'ES256'), input, sig), true);
    const listed = (await backend.list()).filter((o) => o.keyId === keyId);
    assert.deepEqual(listed.map((o) => o.kind).sort(), ['private', 'public']);
    assert.equal(listed[0]?.scope, 'other');
  });

  it('drops a cached handle when another process destroys the key, and finds its replacement', async () => {
    const { ref } = await makeKey('ES256');
    const id = ref.ref.id as string;
    await backend.sign(ref, 'ES256', Buffer.from('warm.cache'));
    await pkcs11Tool(token, ['--delete-object', '--type', 'privkey', '--id', id]);
    await assert.rejects(backend.sign(ref, 'ES256', Buffer.from('a.b')), (e) =>
      hasCode(e, 'BACKEND_OBJECT_NOT_FOUND'),
    );
    await pkcs11Tool(token, ['--delete-object', '--type', 'pubkey', '--id', id]);
    await pkcs11Tool(token, keypairgenArgs(id));
    const input = Buffer.from('after.replacement');
    assert.equal(
      nodeVerify(
        'ES256',
        await backend.publicKey(ref, 'ES256'),
        input,
        await backend.sign(ref, 'ES256', input),
      ),
      true,
    );
  });

  it('seals a key it just made without searching the token; searches when another process replaced it', async () => {
    // SoftHSM2 answers every C_FindObjects by reading every object on the token: counted here.
    const ck = (backend as unknown as { ck: Cryptoki }).ck;
    const find = ck.findObjects.bind(ck);
    let finds = 0;
    ck.findObjects = (session, template) => {
      finds++;
      return find(session, template);
    };
    try {
      const fresh = await makeKey('ES256', 'sealing');
      const seal = Buffer.from('v1.fresh-seal');
      finds = 0;
      await backend.attachSeal(fresh.ref, seal);
      // No search at all: the private key is the handle generate() kept, and a key this process
      // generated has no seal it did not make (pkcs11-object-index.test.ts: one planted meanwhile).
      assert.equal(finds, 0);
      const [inspected] = await backend.inspectKeys([{ ref: fresh.ref, alg: 'ES256' }]);
      assert.ok(inspected?.status === 'found');
      assert.deepEqual(inspected.facts.seal, seal);

      // The kept handle goes stale: another process destroys the pair and makes one with its CKA_ID.
      const replaced = await makeKey('ES256', 'sealing');
      const id = replaced.ref.ref.id as string;
      await pkcs11Tool(token, ['--delete-object', '--type', 'privkey', '--id', id]);
      await pkcs11Tool(token, ['--delete-object', '--type', 'pubkey', '--id', id]);
      await pkcs11Tool(token, keypairgenArgs(id));
      finds = 0;
      await backend.attachSeal(replaced.ref, Buffer.from('v1.replaced-seal'));
      assert.ok(finds >= 2, `searched for the key (${finds} finds)`);
      const [again] = await backend.inspectKeys([{ ref: replaced.ref, alg: 'ES256' }]);
      assert.ok(again?.status === 'found');
      // Sealed under the label of the object found on the token, as before the handle was kept.
      assert.deepEqual(again.facts.seal, Buffer.from('v1.replaced-seal'));
    } finally {
      ck.findObjects = find;
    }
  });

  it('re-opens sessions and logs in again once the token dropped them; concurrent signs all succeed', async () => {
    const { ref, jwk } = await makeKey('ES384');
    await backend.sign(ref, 'ES384', Buffer.from('before.drop'));
    const before = reopened;
    dropAllSessions(token);
    const inputs = Array.from({ length: 20 }, (_, i) => Buffer.from(`after.drop${i}`));
    const sigs = await Promise.all(inputs.map((input) => backend.sign(ref, 'ES384', input)));
    sigs.forEach((sig, i) => assert.equal(nodeVerify('ES384', jwk, inputs[i] as Buffer, sig), true));
    assert.equal(reopened, before + 1, 'exactly one recovery for all 20 failed operations');
    dropAllSessions(token);
    const h = await backend.health();
    assert.equal(h.ok, true, h.detail);
    assert.equal(reopened, before + 2);
  });

  it('keeps the event loop responsive while 200 RSA signatures run', async () => {
    const { ref, jwk } = await makeKey('RS256');
    let ticks = 0;
    let maxGapMs = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
      ticks += 1;
    }, 2);
    const inputs = Array.from({ length: 200 }, (_, i) => Buffer.from(`loop.${i}`));
    const started = performance.now();
    try {
      const sigs = await Promise.all(inputs.map((input) => backend.sign(ref, 'RS256', input)));
      sigs.forEach((sig, i) => assert.equal(nodeVerify('RS256', jwk, inputs[i] as Buffer, sig), true));
    } finally {
      clearInterval(timer);
    }
    const durationMs = performance.now() - started;
    // A blocking C_Sign stalls the loop for the whole run (measured: one gap ~= the duration).
    assert.ok(ticks >= 10, `only ${ticks} timer ticks in ${durationMs.toFixed(0)} ms`);
    assert.ok(
      maxGapMs < durationMs / 2,
      `loop stalled ${maxGapMs.toFixed(0)} ms of ${durationMs.toFixed(0)} ms`,
    );
  });

  it('generates one key at a time per module, and signs meanwhile: 12 concurrent generations all succeed', async () => {
    // oneAtATime: no two tasks overlap, and a failed task does not stop the queue.
    const ck = Cryptoki.open(token.modulePath, token.env);
    try {
      let running = 0;
      let most = 0;
      const task = (fail: boolean) => async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        if (fail) throw new Error('task failed');
        return 'done';
      };
      const results = await Promise.allSettled([true, false, true, false].map((f) => ck.oneAtATime(task(f))));
      assert.equal(most, 1, 'two tasks overlapped');
      assert.deepEqual(
        results.map((r) => r.status),
        ['rejected', 'fulfilled', 'rejected', 'fulfilled'],
      );
    } finally {
      ck.release();
    }
    // Concurrent generations through the backend (SoftHSM2 failed some when they overlapped),
    // with signatures going on at the same time on an existing key.
    const existing = await makeKey('ES256');
    let signing = true;
    let signed = 0;
    const signer = (async () => {
      while (signing) {
        await backend.sign(existing.ref, 'ES256', Buffer.from('a.b'));
        signed++;
      }
    })();
    const made = await Promise.all(
      Array.from({ length: 12 }, (_, i) => makeKey(i % 2 ? 'ES256' : 'EdDSA', 'gen')),
    );
    signing = false;
    await signer;
    assert.equal(new Set(made.map((m) => m.jwk.x)).size, 12, 'twelve distinct keys');
    assert.ok(signed > 0, 'signing went on while keys were generated');
  });

  it('refuses to generate over an existing CKA_ID and to sign with a key of another type', async () => {
    const { ref } = await makeKey('EdDSA');
    const keyId = String(ref.ref.label).split(':')[2] as string;
    const now = new Date();
    await assert.rejects(
      backend.generate(ref, { alg: 'EdDSA', scope: 'sessions', keyId, notBefore: now, notAfter: now }),
      (e) => hasCode(e, 'BACKEND_OBJECT_EXISTS'),
    );
    await assert.rejects(backend.sign(ref, 'ES256', Buffer.from('a.b')), (e) =>
      hasCode(e, 'BACKEND_MECHANISM_UNSUPPORTED'),
    );
    await assert.rejects(backend.publicKey(ref, 'RS256'), (e) => hasCode(e, 'BACKEND_MECHANISM_UNSUPPORTED'));
  });

  it('listAllObjects shows objects without the keywarden label; list() does not', async () => {
    await pkcs11Tool(token, [
      '--keypairgen',
      '--key-type',
      'EC:prime256v1',
      '--id',
      'f0f0',
      '--label',
      'foreign',
    ]);
    const all = await backend.listAllObjects();
    const foreign = all.filter((o) => o.label === 'foreign');
    assert.deepEqual(foreign.map((o) => o.class).sort(), ['private', 'public']);
    assert.equal(foreign.find((o) => o.class === 'private')?.keyType, 'EC');
    assert.equal(foreign[0]?.scope, null);
    assert.equal(
      (await backend.list()).some((o) => o.label === 'foreign'),
      false,
    );
  });

  it('describeToken reports the module, the token and the algorithms it supports', async () => {
    const d = await backend.describeToken();
    assert.match(d.manufacturer, /SoftHSM/);
    assert.equal(d.token?.token?.label, token.tokenLabel);
    assert.equal(d.token?.token?.initialized, true);
    assert.deepEqual(d.token?.token?.algorithms, {
      ES256: true,
      ES384: true,
      RS256: true,
      PS256: true,
      EdDSA: true,
    });
  });
});
