/**
 * The client seal input (policy/client-seal.ts): every fact authentication depends on changes it,
 * nothing that grants the same changes it, it cannot be mistaken for a key seal or a JWS signing
 * input; the stored form round-trips and anything else reads as no seal. Refusal reasons are
 * vocabulary (CONVENTIONS): each is documented in docs/api.md, and the docs name no other.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLIENT_REFUSAL_REASONS,
  clientSealInput,
  decodeClientSeal,
  encodeClientSeal,
  sealedGrants,
  type ClientSealFacts,
} from '../../../src/policy/client-seal';

const FACTS: ClientSealFacts = {
  id: '4b0c2f1e-8f5a-4c36-9d0e-0e1f2a3b4c5d',
  name: 'billing',
  secretHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA',
  grants: { consumer: ['sign', 'verify'], enterprise: ['verify'] },
  createdAt: new Date(Date.UTC(2026, 5, 1)),
};

describe('client seal input', () => {
  const text = (f: ClientSealFacts) => clientSealInput(f).toString('utf8');

  it('is domain-separated canonical JSON of the facts', () => {
    assert.equal(
      text(FACTS),
      'keywarden client seal v1\n' +
        '{"createdAt":1780272000000,"grants":{"consumer":["sign","verify"],"enterprise":["verify"]},' +
        '"id":"4b0c2f1e-8f5a-4c36-9d0e-0e1f2a3b4c5d","name":"billing","secretHash":"scrypt$16384$8$1$c2FsdA$aGFzaA","v":1}',
    );
    // Never a JWS signing input (no newline there), never a key seal.
    assert.ok(!text(FACTS).startsWith('keywarden key seal'));
  });

  it('covers a certificate binding under its own version: added, changed or stripped, the input differs', () => {
    const SPKI = 'CTCGG8jxGc_NvuSV5-7jLdIIJTobL1tBUw7sp-76VSM';
    // A row without a binding (null or absent) is sealed exactly as before bindings existed.
    assert.equal(text({ ...FACTS, certSpkiSha256: null }), text(FACTS));
    const bound = { ...FACTS, secretHash: null, certSpkiSha256: SPKI };
    assert.equal(
      text(bound),
      'keywarden client seal v2\n' +
        `{"certSpkiSha256":"${SPKI}","createdAt":1780272000000,"grants":{"consumer":["sign","verify"],"enterprise":["verify"]},` +
        '"id":"4b0c2f1e-8f5a-4c36-9d0e-0e1f2a3b4c5d","name":"billing","secretHash":null,"v":2}',
    );
    const inputs = new Set([
      text(FACTS),
      text({ ...FACTS, certSpkiSha256: SPKI }),
      text(bound),
      text({ ...bound, certSpkiSha256: 'MFhu71yOUDOCi6oHD3EGLgRAt8ZPCW4wL8sOwWsWFdQ' }),
      text({ ...bound, certSpkiSha256: null }),
    ]);
    assert.equal(inputs.size, 5);
  });

  it('changes with every fact authentication depends on', () => {
    const base = text(FACTS);
    for (const change of [
      { id: '00000000-0000-4000-8000-000000000000' },
      { name: 'billing2' },
      { secretHash: 'scrypt$16384$8$1$c2FsdA$b3RoZXI' },
      { grants: { consumer: ['sign', 'verify'], enterprise: ['sign', 'verify'] } },
      { grants: { consumer: ['sign', 'verify'] } },
      { grants: { consumer: ['sign', 'verify'], enterprise: ['verify'], beta: ['verify'] } },
      { createdAt: new Date(FACTS.createdAt.getTime() + 1) },
    ]) {
      assert.notEqual(text({ ...FACTS, ...change }), base, JSON.stringify(change));
    }
  });

  it('is the same for grants that grant the same: order, duplicates, empty scopes', () => {
    assert.equal(
      text({
        ...FACTS,
        grants: { enterprise: ['verify', 'verify'], consumer: ['verify', 'sign'], other: [] },
      }),
      text(FACTS),
    );
  });

  it('covers grants that are not grant lists as they are (they never equal real grants)', () => {
    assert.equal(sealedGrants({ consumer: 'sign' }), null);
    assert.equal(sealedGrants(['sign']), null);
    assert.equal(sealedGrants(null), null);
    assert.notEqual(text({ ...FACTS, grants: { consumer: 'sign,verify' } }), text(FACTS));
    assert.notEqual(text({ ...FACTS, grants: 'unparsed:{' }), text({ ...FACTS, grants: {} }));
  });

  it('is stored as {kid, sig} and read back; anything else is no seal', () => {
    const seal = { kid: 'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde', signature: Buffer.alloc(64, 7) };
    const stored = encodeClientSeal(seal);
    assert.deepEqual(JSON.parse(stored), { kid: seal.kid, sig: seal.signature.toString('base64url') });
    assert.deepEqual(decodeClientSeal(stored), seal);
    for (const bad of [
      null,
      '',
      '{',
      '[]',
      'null',
      '{"kid":1,"sig":"AAAAAAAAAAAAAAAAAAAAAA"}',
      '{"kid":"short","sig":"AAAAAAAAAAAAAAAAAAAAAA"}',
      `{"kid":"${seal.kid}","sig":"not base64url!"}`,
      `{"kid":"${seal.kid}","sig":"${'A'.repeat(5000)}"}`,
    ]) {
      assert.equal(decodeClientSeal(bad), null, String(bad));
    }
  });
});

describe('docs/api.md: API client refusal reasons', () => {
  const doc = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'api.md'), 'utf8');
  const start = doc.indexOf('## API clients and authentication');
  const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (m) rows.set(m[1]!, m[2]!.trim());
  }

  it('documents every reason', () => {
    assert.ok(start >= 0);
    const missing = Object.keys(CLIENT_REFUSAL_REASONS).filter(
      (r) => !rows.get(r) || rows.get(r)!.length < 10,
    );
    assert.deepEqual(missing, []);
  });

  it('documents no reason that does not exist', () => {
    assert.deepEqual(
      [...rows.keys()].filter((r) => !Object.hasOwn(CLIENT_REFUSAL_REASONS, r)),
      [],
    );
  });
});
