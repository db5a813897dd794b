import { strict as assert } from 'node:assert';
import { scanPaths, type Finding } from '../../../src/scan';
import { indexKnownKeys } from '../../../src/scan/known-keys';
import { RawScanner } from '../../../src/scan/raw';
import { heapLike, le, makeKey, noise, plantIn, tempDir, type FixtureKey } from '../../helpers/scan-fixtures';

/** Raw bytes of known keys in memory-like data: no structure around them to parse. */
describe('scan: raw key material of known keys', function () {
  this.timeout(30_000);
  let ec: FixtureKey;
  let ec384: FixtureKey;
  let ed: FixtureKey;
  let rsa: FixtureKey;
  let t: ReturnType<typeof tempDir>; // made in before(): loading the file must not touch disk

  before(async () => {
    t = tempDir();
    [ec, ec384, ed, rsa] = await Promise.all([
      makeKey('P-256'),
      makeKey('P-384'),
      makeKey('Ed25519'),
      makeKey('RSA'),
    ]);
  });
  after(() => t?.cleanup());

  /** Plants each [offset, bytes] into heap-like filler, scans it, returns the findings. */
  async function scanPlanted(
    plants: [number, Buffer][],
    keys: FixtureKey[],
    size = 64 * 1024,
    allPrivateKeys = false,
  ) {
    let data = heapLike(size, plants.length + 7);
    for (const [at, bytes] of plants) data = plantIn(data, at, bytes);
    const file = t.write(`raw-${Math.random().toString(36).slice(2)}`, data);
    const result = await scanPaths([file], { knownKeys: keys.map((k) => k.known), allPrivateKeys });
    return { findings: result.findings, data };
  }

  function at(findings: Finding[], offset: number): Finding[] {
    return findings.filter((f) => f.offset === offset);
  }

  function assertFound(
    findings: Finding[],
    key: FixtureKey,
    encoding: string,
    offset: number,
    length: number,
  ) {
    const f = at(findings, offset);
    assert.equal(f.length, 1, `${encoding} at ${offset}: ${JSON.stringify(findings)}`);
    assert.equal(f[0]!.encoding, encoding);
    assert.equal(f[0]!.length, length);
    assert.equal(f[0]!.match?.kid, key.known.kid);
    assert.equal(f[0]!.fingerprint, key.known.kid);
  }

  it('finds a P-256 scalar big- and little-endian at aligned and unaligned offsets', async () => {
    const plants: [number, Buffer][] = [
      [4096, ec.secret],
      [9001, ec.secret],
      [16384, le(ec.secret)],
      [20003, le(ec.secret)],
      [30005, ec.secret],
    ];
    const { findings } = await scanPlanted(plants, [ec]);
    for (const [offset, bytes] of plants) {
      assertFound(findings, ec, bytes.equals(ec.secret) ? 'raw-ec-be' : 'raw-ec-le', offset, 32);
    }
    assert.equal(findings.length, plants.length);
  });

  it('finds a P-256 scalar between pointers and in zero padding, with no size header', async () => {
    const data = heapLike(8192, 3);
    data.fill(0, 1000, 1100);
    ec.secret.copy(data, 1030); // inside zero padding
    le(ec.secret).copy(data, 4096); // right after a pointer word, before another
    const file = t.write('between.bin', data);
    const { findings } = await scanPaths([file], { knownKeys: [ec.known] });
    assertFound(findings, ec, 'raw-ec-be', 1030, 32);
    assertFound(findings, ec, 'raw-ec-le', 4096, 32);
  });

  it('finds a P-384 scalar as an aligned, isolated block in either byte order', async () => {
    const plants: [number, Buffer][] = [
      [2048, le(ec384.secret)],
      [12000, ec384.secret],
    ];
    const { findings } = await scanPlanted(plants, [ec384]);
    assertFound(findings, ec384, 'raw-ec-le', 2048, 48);
    assertFound(findings, ec384, 'raw-ec-be', 12000, 48);
  });

  it('finds an Ed25519 seed at an aligned offset and isolated at an unaligned one', async () => {
    const data = plantIn(heapLike(32 * 1024, 5), 8192, ed.secret);
    data.fill(0, 20000, 20100);
    ed.secret.copy(data, 20035);
    const file = t.write('ed.bin', data);
    const { findings } = await scanPaths([file], { knownKeys: [ed.known] });
    assertFound(findings, ed, 'raw-ed25519-seed', 8192, 32);
    assertFound(findings, ed, 'raw-ed25519-seed', 20035, 32);
  });

  it('finds both RSA primes of a known modulus, big- and little-endian, at any offset', async () => {
    const q = rsa.secondPrime!;
    const plants: [number, Buffer][] = [
      [1024, rsa.secret],
      [5003, le(q)],
      [40000, le(rsa.secret)],
      [50001, q],
    ];
    const { findings } = await scanPlanted(plants, [rsa]);
    assertFound(findings, rsa, 'raw-rsa-prime', 1024, 128);
    assertFound(findings, rsa, 'raw-rsa-prime-le', 5003, 128);
    assertFound(findings, rsa, 'raw-rsa-prime-le', 40000, 128);
    assertFound(findings, rsa, 'raw-rsa-prime', 50001, 128);
  });

  it('finds nothing in random data or heap-like data of the same size', async () => {
    const keys = [ec, ec384, ed, rsa];
    const random = t.write('random.bin', noise(256 * 1024));
    const heap = t.write('heap.bin', heapLike(256 * 1024, 11));
    const r = await scanPaths([random, heap], { knownKeys: keys.map((k) => k.known), allPrivateKeys: true });
    assert.deepEqual(r.findings, []);
    assert.equal(r.bytesScanned, 512 * 1024);
  });

  it('does not report raw bytes of a key it does not know, even with allPrivateKeys', async () => {
    // Raw bytes can only be recognised through a known public key; this is by design.
    const { findings } = await scanPlanted([[4096, ec.secret]], [ec384, rsa], 64 * 1024, true);
    assert.deepEqual(findings, []);
  });

  it('checks a value that repeats once, and still reports every copy of a known key', async () => {
    const decoy = noise(32);
    let data = heapLike(64 * 1024, 17);
    for (let i = 0; i < 6; i++) data = plantIn(data, 4096 * (i + 1), decoy);
    for (let i = 0; i < 3; i++) data = plantIn(data, 40_000 + 4096 * i, ec.secret);
    const raw = new RawScanner(await indexKnownKeys([ec.known]));
    const hits = raw.scan(data, 0);
    assert.deepEqual(
      hits.map((h) => [h.offset, h.encoding]),
      [0, 1, 2].map((i) => [40_000 + 4096 * i, 'raw-ec-be']),
    );
    // The decoy is tried big- and little-endian at its first copy, then skipped as a repeat.
    assert.ok(raw.stats.repeatsSkipped >= 10, JSON.stringify(raw.stats));
  });

  it('does not take a scalar of another key for a known one', async () => {
    const other = await makeKey('P-256');
    const { findings } = await scanPlanted(
      [
        [4096, other.secret],
        [8192, le(other.secret)],
      ],
      [ec],
    );
    assert.deepEqual(findings, []);
  });
});
