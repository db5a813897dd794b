import { strict as assert } from 'node:assert';
import { scanPaths, type Finding, type KnownKey } from '../../../src/scan';
import {
  encodings,
  hasSshKeygen,
  makeKey,
  noise,
  sshKeygenEd25519,
  tempDir,
  toOpenSsh,
  type FixtureKey,
} from '../../helpers/scan-fixtures';

/** Asserts that `actual` has every member of `expected` (deep-equal per member). */
function includes(actual: object | undefined, expected: Record<string, unknown>): void {
  assert.ok(actual !== undefined, 'finding missing');
  for (const [k, v] of Object.entries(expected))
    assert.deepEqual((actual as Record<string, unknown>)[k], v, k);
}

describe('scan: PEM, DER, JWK and OpenSSH encodings', function () {
  this.timeout(30_000);
  let ec: FixtureKey;
  let ec384: FixtureKey;
  let ed: FixtureKey;
  let rsa: FixtureKey;
  let known: KnownKey[];
  let t: ReturnType<typeof tempDir>; // made in before(): loading the file must not touch disk

  before(async () => {
    t = tempDir();
    [ec, ec384, ed, rsa] = await Promise.all([
      makeKey('P-256'),
      makeKey('P-384'),
      makeKey('Ed25519'),
      makeKey('RSA'),
    ]);
    known = [ec, ec384, ed, rsa].map((k) => k.known);
  });
  after(() => t?.cleanup());

  /** Scans one file holding `parts` back to back; returns findings and each part's offset. */
  async function scanParts(parts: (Buffer | string)[], knownKeys = known, allPrivateKeys = false) {
    const bufs = parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p));
    const offsets = bufs.map((_, i) => bufs.slice(0, i).reduce((n, b) => n + b.length, 0));
    const file = t.write(`f${Math.random().toString(36).slice(2)}`, Buffer.concat(bufs));
    const result = await scanPaths([file], { knownKeys, allPrivateKeys });
    assert.deepEqual(result.errors, []);
    return { findings: result.findings, offsets, lengths: bufs.map((b) => b.length) };
  }

  function expectOne(
    findings: Finding[],
    key: FixtureKey,
    encoding: string,
    offset: number,
    length?: number,
  ) {
    const f = findings.filter((x) => x.encoding === encoding && x.offset === offset);
    assert.equal(f.length, 1, `${encoding} at ${offset} in ${JSON.stringify(findings)}`);
    assert.deepEqual(f[0]!.match, { kid: key.known.kid, scope: 'consumer', state: 'active' });
    assert.equal(f[0]!.fingerprint, key.known.kid);
    if (length !== undefined) assert.equal(f[0]!.length, length);
  }

  it('finds PEM PKCS#1, PKCS#8 and SEC1 keys with the right kid, offset and length', async () => {
    const e = encodings(rsa);
    const c = encodings(ec);
    const parts = ['some text\n', e.pkcs1Pem!, '\n', c.pkcs8Pem, 'x', c.sec1Pem!, encodings(ed).pkcs8Pem];
    const { findings, offsets, lengths } = await scanParts(parts);
    expectOne(findings, rsa, 'pem-pkcs1', offsets[1]!, lengths[1]! - 1); // the PEM without its final newline
    expectOne(findings, ec, 'pem-pkcs8', offsets[3]!);
    expectOne(findings, ec, 'pem-sec1', offsets[5]!);
    expectOne(findings, ed, 'pem-pkcs8', offsets[6]!);
    assert.equal(findings.length, 4);
  });

  it('finds PEM text embedded in binary noise and inside JSON strings with \\n escapes', async () => {
    const pem = encodings(ec384).pkcs8Pem;
    const jsonEscaped = JSON.stringify({ private_key: encodings(rsa).pkcs8Pem }).replace(
      '{"private_key":"',
      '',
    );
    const { findings, offsets } = await scanParts([noise(5000), pem, noise(3001), jsonEscaped, noise(77)]);
    expectOne(findings, ec384, 'pem-pkcs8', offsets[1]!);
    expectOne(findings, rsa, 'pem-pkcs8', offsets[3]!);
    assert.equal(findings.length, 2);
  });

  it('finds DER PKCS#1, PKCS#8 and SEC1 keys anywhere in binary data', async () => {
    const r = encodings(rsa);
    const c = encodings(ec);
    const parts = [
      noise(999),
      r.pkcs1Der!,
      noise(13),
      c.pkcs8Der,
      noise(7),
      c.sec1Der!,
      noise(3),
      encodings(ed).pkcs8Der,
      noise(50),
    ];
    const { findings, offsets, lengths } = await scanParts(parts);
    expectOne(findings, rsa, 'der-pkcs1', offsets[1]!, lengths[1]);
    expectOne(findings, ec, 'der-pkcs8', offsets[3]!, lengths[3]);
    expectOne(findings, ec, 'der-sec1', offsets[5]!, lengths[5]);
    expectOne(findings, ed, 'der-pkcs8', offsets[7]!, lengths[7]);
    // The SEC1 inside the PKCS#8 and the raw scalar inside both are the same leak: not repeated.
    assert.equal(findings.length, 4);
  });

  it('finds a private JWK and each private key of a JWKS at its own offset', async () => {
    const jwk = JSON.stringify(ec.privateJwk, null, 2);
    const jwks = JSON.stringify({
      keys: [
        { ...ed.privateJwk, kid: 'a' },
        { ...rsa.privateJwk, kid: 'b' },
      ],
    });
    const { findings, offsets } = await scanParts(['{"config": ', jwk, ', "n": 1}\n', noise(100), jwks]);
    expectOne(findings, ec, 'jwk', offsets[1]!, jwk.length);
    expectOne(findings, ed, 'jwk', offsets[4]! + '{"keys":['.length);
    const rsaAt = offsets[4]! + jwks.indexOf('{', 1 + jwks.indexOf('}'));
    expectOne(findings, rsa, 'jwk', rsaAt);
    assert.equal(findings.length, 3);
  });

  it('ignores public JWKs and JSON that only looks like a key', async () => {
    const { d: _d, ...publicOnly } = ec.privateJwk;
    const fake = JSON.stringify({ kty: 'EC', crv: 'P-256', d: 'not-a-key', x: 'AA', y: 'AA' });
    const { findings } = await scanParts(
      [JSON.stringify(publicOnly), fake, '{"d": 1, "kty": 2}'],
      known,
      true,
    );
    assert.deepEqual(findings, []);
  });

  it('reports encrypted PKCS#8 only with allPrivateKeys, without a fingerprint', async () => {
    const encrypted = ec.privateKey.export({
      format: 'pem',
      type: 'pkcs8',
      cipher: 'aes-256-cbc',
      passphrase: 'pw',
    });
    const without = await scanParts([noise(10), encrypted as string]);
    assert.deepEqual(without.findings, []);
    const withAll = await scanParts([noise(10), encrypted as string], known, true);
    assert.equal(withAll.findings.length, 1);
    includes(withAll.findings[0], {
      offset: 10,
      encoding: 'pem-pkcs8-encrypted',
      fingerprint: null,
      match: null,
    });
  });

  it('reads OpenSSH private keys written by ssh-keygen, plain and encrypted', async () => {
    assert.ok(
      hasSshKeygen(),
      'ssh-keygen (Debian package openssh-client) is needed to write real OpenSSH keys',
    );
    const plain = toOpenSsh(ec.privateKey);
    const rsaPlain = toOpenSsh(rsa.privateKey);
    const encrypted = toOpenSsh(ec384.privateKey, 'secret');
    const edKey = await sshKeygenEd25519();
    const knownKeys = [...known, edKey.known];
    const { findings, offsets } = await scanParts(
      [plain, noise(64), rsaPlain, encrypted, edKey.text],
      knownKeys,
    );
    expectOne(findings, ec, 'pem-openssh', offsets[0]!);
    expectOne(findings, rsa, 'pem-openssh', offsets[2]!);
    // Encrypted: the public key is stored in clear, so it still matches by thumbprint.
    expectOne(findings, ec384, 'pem-openssh-encrypted', offsets[3]!);
    const ed = findings.find((f) => f.offset === offsets[4]);
    includes(ed, { encoding: 'pem-openssh', keyType: 'Ed25519', fingerprint: edKey.known.kid });
  });

  it('does not report a PEM block whose body is not a key', async () => {
    const broken = encodings(ec).pkcs8Pem.replace(/[A-Z]/g, 'A');
    const { findings } = await scanParts(
      [broken, '-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n'],
      known,
      true,
    );
    assert.deepEqual(findings, []);
  });
});
