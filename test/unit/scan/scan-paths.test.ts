import { strict as assert } from 'node:assert';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { hasCode } from '../../../src/policy/errors';
import { scanPaths, type ScanProgress } from '../../../src/scan';
import {
  encodings,
  heapLike,
  le,
  makeKey,
  noise,
  plantIn,
  tempDir,
  type FixtureKey,
} from '../../helpers/scan-fixtures';

describe('scanPaths: files, chunks, filters and what findings never contain', function () {
  this.timeout(30_000);
  let ec: FixtureKey;
  let rsa: FixtureKey;
  let stranger: FixtureKey;
  let t: ReturnType<typeof tempDir>; // made in before(): loading the file must not touch disk

  before(async () => {
    t = tempDir();
    [ec, rsa, stranger] = await Promise.all([makeKey('P-256'), makeKey('RSA'), makeKey('P-256', 'other')]);
  });
  after(() => t?.cleanup());

  it('finds material straddling a chunk boundary exactly once, at every chunk size', async () => {
    // With chunkBytes C each read covers [iC, iC + C + 64 KiB): at C = 64 KiB every planted
    // item below crosses the end of one read's buffer and lies inside the overlap of another.
    const chunk = 64 * 1024;
    const pem = encodings(ec).pkcs8Pem;
    const der = encodings(rsa).pkcs1Der!;
    let data = heapLike(8 * chunk, 9);
    data = plantIn(data, 2 * chunk - 13, le(ec.secret)); // raw, across the 2nd boundary
    Buffer.from(pem, 'latin1').copy(data, 4 * chunk - 100); // PEM across the 4th
    der.copy(data, 6 * chunk - 600); // DER across the 6th
    const file = t.write('straddle.bin', data);
    const expected = [
      { offset: 2 * chunk - 13, encoding: 'raw-ec-le' },
      { offset: 4 * chunk - 100, encoding: 'pem-pkcs8' },
      { offset: 6 * chunk - 600, encoding: 'der-pkcs1' },
    ];
    for (const chunkBytes of [chunk, chunk + 1, 3 * chunk - 5, 100_003, 1 << 22]) {
      const r = await scanPaths([file], { knownKeys: [ec.known, rsa.known], chunkBytes });
      const got = r.findings.map((f) => ({ offset: f.offset, encoding: f.encoding }));
      assert.deepEqual(got, expected, `chunkBytes ${chunkBytes}`);
      assert.equal(r.bytesScanned, data.length);
    }
  });

  it('finds raw copies lying just before, on and after chunk boundaries exactly once', async () => {
    // Each raw window is tried by one chunk only (the one that also holds its neighbours).
    // Boundaries 32 chunks apart: each read (chunk + 64 KiB overlap) sees one of them.
    const chunkBytes = 4096;
    const spacing = 32 * chunkBytes;
    const deltas = [-48, -40, -33, -9, -8, -7, -1, 0, 1, 7, 8, 9, 31];
    const data = Buffer.alloc(spacing * (deltas.length + 2));
    const expected: { offset: number; encoding: string }[] = [];
    deltas.forEach((d, i) => {
      const offset = (i + 1) * spacing + d;
      const le = i % 2 === 1 && offset % 8 === 0; // little-endian where it is tried: aligned
      (le ? Buffer.from(ec.secret).reverse() : ec.secret).copy(data, offset);
      expected.push({ offset, encoding: le ? 'raw-ec-le' : 'raw-ec-be' });
    });
    const file = t.write('boundaries.bin', data);
    for (const size of [chunkBytes, 1 << 22]) {
      const r = await scanPaths([file], { knownKeys: [ec.known], chunkBytes: size });
      const got = r.findings.map((f) => ({ offset: f.offset, encoding: f.encoding }));
      assert.deepEqual(got, expected, `chunkBytes ${size}`);
    }
  });

  it('reports a private key it does not know only with allPrivateKeys, with match null', async () => {
    const file = t.write('stranger.pem', encodings(stranger).sec1Pem!);
    const quiet = await scanPaths([file], { knownKeys: [ec.known] });
    assert.deepEqual(quiet.findings, []);
    const loud = await scanPaths([file], { knownKeys: [ec.known], allPrivateKeys: true });
    assert.equal(loud.findings.length, 1);
    assert.equal(loud.findings[0]!.match, null);
    assert.equal(loud.findings[0]!.fingerprint, stranger.known.kid); // the public half's thumbprint
  });

  it('never puts private bytes into findings, in any spelling', async () => {
    const e = encodings(rsa);
    const c = encodings(ec);
    const data = Buffer.concat([
      Buffer.from(c.pkcs8Pem + JSON.stringify(ec.privateJwk) + e.pkcs1Pem!),
      noise(100),
      c.sec1Der!,
      plantIn(heapLike(4096, 2), 1024, ec.secret),
      plantIn(heapLike(4096, 3), 2003, le(rsa.secondPrime!)),
    ]);
    const file = t.write('all.bin', data);
    const r = await scanPaths([file], { knownKeys: [ec.known, rsa.known], allPrivateKeys: true });
    assert.ok(r.findings.length >= 6, JSON.stringify(r.findings));
    const text = JSON.stringify(r);
    const secrets = [
      ec.secret,
      le(ec.secret),
      rsa.secret,
      rsa.secondPrime!,
      Buffer.from(rsa.privateJwk.d!, 'base64url'),
    ];
    for (const s of secrets) {
      for (const spelling of [
        s.toString('hex'),
        s.toString('base64url'),
        s.toString('base64'),
        s.toString('latin1'),
      ]) {
        assert.ok(!text.includes(spelling.slice(0, 24)), 'a finding contains private material');
      }
    }
    for (const f of r.findings) {
      assert.deepEqual(Object.keys(f).sort(), [
        'encoding',
        'file',
        'fingerprint',
        'keyType',
        'length',
        'match',
        'offset',
      ]);
    }
  });

  it('walks directories recursively, follows file links, reports unreadable paths and goes on', async () => {
    const root = join(t.dir, 'tree');
    mkdirSync(join(root, 'a', 'b'), { recursive: true });
    t.write('tree/a/b/key.pem', encodings(ec).pkcs8Pem);
    t.write('tree/a/readme.txt', 'nothing here');
    symlinkSync(join(root, 'a', 'b', 'key.pem'), join(root, 'link.pem'));
    symlinkSync(root, join(root, 'a', 'loop')); // a directory link: not followed
    const missing = join(t.dir, 'does-not-exist');
    const r = await scanPaths([root, missing], { knownKeys: [ec.known] });
    assert.deepEqual(r.findings.map((f) => f.file).sort(), [
      join(root, 'a', 'b', 'key.pem'),
      join(root, 'link.pem'),
    ]);
    assert.equal(r.files, 3);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.file, missing);
  });

  it('reports progress per chunk up to the total', async () => {
    const a = t.write('p1.bin', heapLike(200_000, 4));
    const b = t.write('p2.bin', heapLike(5_000, 5));
    const seen: ScanProgress[] = [];
    await scanPaths([a, b], { knownKeys: [ec.known], chunkBytes: 65_536, onProgress: (p) => seen.push(p) });
    // Each read takes chunkBytes plus an overlap, so the last chunk of a file may end it early.
    assert.deepEqual(
      seen.map((p) => p.bytesDone),
      [65_536, 131_072, 200_000, 205_000],
    );
    assert.ok(seen.every((p) => p.bytesTotal === 205_000));
    assert.equal(seen[seen.length - 1]!.file, b);
  });

  it('scans empty files and rejects a chunk size that is not a positive integer', async () => {
    const empty = t.write('empty', Buffer.alloc(0));
    const r = await scanPaths([empty], { knownKeys: [] });
    assert.deepEqual(r, { findings: [], bytesScanned: 0, files: 1, errors: [] });
    for (const chunkBytes of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(scanPaths([empty], { knownKeys: [], chunkBytes }), (e) =>
        hasCode(e, 'SCAN_ERROR'),
      );
    }
  });
});
