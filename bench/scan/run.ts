/**
 * Scan throughput on a ~1 GiB file made of a real Node.js core dump (gcore of a process that
 * held P-256, P-384, Ed25519 and RSA keys in Node crypto) followed by zero pages, JSON log
 * text, heap-like memory and random data with planted keys. Yardstick, in the same run and on
 * the same (page-cached) file: `grep -c PRIVATE`. Prints MB/s, the ratio, and whether every
 * copy was found: every planted key, and every copy of each secret in the core (located by
 * this script with indexOf, since it knows the secrets).
 *
 *   taskset -c 0 npx tsx bench/scan/run.ts [--keep]      (root, gdb installed; ~1 min)
 *
 * The issue #7 target is for one core: pin the run (taskset) and read the wall time; the
 * time, load average and allowed CPUs are printed at the start and the end.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { PublicJwk } from '../../src/policy/key';
import { scanPaths, type Finding } from '../../src/scan';
import { indexKnownKeys, type KnownKeyIndex } from '../../src/scan/known-keys';
import { RawScanner } from '../../src/scan/raw';
import { nonZeroSpans } from '../../src/scan/windows';
import { encodings, heapLike, le, makeKey, plantIn, type FixtureKey } from '../../test/helpers/scan-fixtures';

const MiB = 1024 * 1024;
const TARGET = 1024 * MiB;
// After the real core: a real core is ~98% zero pages and ~16 MiB of other memory per 650 MiB;
// the synthetic part is denser than that on purpose (more text, heap and random data).
const TEXT_MIB = 100;
const HEAP_MIB = 16;
const RANDOM_MIB = 16;

// Holds its own keys (other than the planted ones) in Node crypto; prints them for ground truth.
const CHILD = `
const c = require('node:crypto');
const out = {};
for (const [name, type, opts] of [['P-256','ec',{namedCurve:'P-256'}],['P-384','ec',{namedCurve:'P-384'}],['Ed25519','ed25519',{}],['RSA','rsa',{modulusLength:2048}]]) {
  const { privateKey } = c.generateKeyPairSync(type, opts);
  const key = c.createPrivateKey({ key: privateKey.export({ format: 'jwk' }), format: 'jwk' });
  for (let i = 0; i < 3; i++) c.sign(type === 'ed25519' ? null : 'sha256', Buffer.from('t' + i), key);
  out[name] = key.export({ format: 'jwk' });
  globalThis['k' + name] = key;
}
process.stdout.write(JSON.stringify(out) + '\\n');
setInterval(() => {}, 1000);
`;

interface Expected {
  kind?: string;
  offset: number;
  encoding: string;
  kid: string;
  where: string;
}

async function dumpCore(
  dir: string,
): Promise<{ core: string; jwks: Record<string, Record<string, string>> }> {
  const child = spawn(process.execPath, ['-e', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve) =>
    createInterface({ input: child.stdout }).once('line', resolve),
  );
  try {
    execFileSync('gcore', ['-o', join(dir, 'core'), String(child.pid)], { stdio: 'ignore' });
  } finally {
    child.kill('SIGKILL');
  }
  const name = readdirSync(dir).find((f) => f.startsWith('core.'))!;
  return { core: join(dir, name), jwks: JSON.parse(line) as Record<string, Record<string, string>> };
}

/** Fixture-shaped key from a private JWK printed by the child. */
async function fromJwk(kind: FixtureKey['kind'], jwk: Record<string, string>): Promise<FixtureKey> {
  const { kty, crv, x, y, n, e } = jwk;
  const publicJwk = JSON.parse(JSON.stringify({ kty, crv, x, y, n, e })) as PublicJwk;
  const kid = await calculateJwkThumbprint(publicJwk as JWK, 'sha256');
  return {
    kind,
    privateKey: createPrivateKey({ key: jwk, format: 'jwk' }),
    privateJwk: jwk,
    known: { kid, scope: 'core', state: 'active', publicJwk },
    secret: Buffer.from(kind === 'RSA' ? jwk.p! : jwk.d!, 'base64url'),
    ...(kind === 'RSA' ? { secondPrime: Buffer.from(jwk.q!, 'base64url') } : {}),
  };
}

function allOffsets(hay: Buffer, needle: Buffer): number[] {
  const out: number[] = [];
  for (let i = hay.indexOf(needle); i !== -1; i = hay.indexOf(needle, i + 1)) out.push(i);
  return out;
}

/** Every raw copy of each core key's secret, as the scanner would label it. */
function rawCopies(core: Buffer, keys: FixtureKey[]): Expected[] {
  const out: Expected[] = [];
  for (const k of keys) {
    const secrets = k.kind === 'RSA' ? [k.secret, k.secondPrime!] : [k.secret];
    for (const s of secrets) {
      const be = k.kind === 'RSA' ? 'raw-rsa-prime' : k.kind === 'Ed25519' ? 'raw-ed25519-seed' : 'raw-ec-be';
      const forms: [Buffer, string][] = [[s, be]];
      if (k.kind !== 'Ed25519') forms.push([le(s), k.kind === 'RSA' ? 'raw-rsa-prime-le' : 'raw-ec-le']);
      for (const [bytes, encoding] of forms) {
        for (const offset of allOffsets(core, bytes))
          out.push({ offset, encoding, kid: k.known.kid, where: `core ${k.kind}` });
      }
    }
  }
  return out;
}

/** Appends the synthetic parts, planting keys; returns what was planted where. */
function appendSynthetic(fd: number, start: number, planted: FixtureKey[]): Expected[] {
  const [ec, ec384, ed, rsa] = planted as [FixtureKey, FixtureKey, FixtureKey, FixtureKey];
  const expected: Expected[] = [];
  let pos = start;
  const write = (b: Buffer): void => {
    writeSync(fd, b);
    pos += b.length;
  };
  const plant = (b: Buffer, encoding: string, k: FixtureKey, where: string): void => {
    expected.push({ offset: pos, encoding, kid: k.known.kid, where: `${where} ${k.kind}` });
    write(b);
  };
  const zeroMiB = Buffer.alloc(MiB);
  const remaining = TARGET - start;
  const zeros = Math.max(0, Math.floor(remaining / MiB) - TEXT_MIB - HEAP_MIB - RANDOM_MIB - 1);
  for (let i = 0; i < zeros; i++) write(zeroMiB); // zero pages
  const log = Buffer.from(
    Array.from(
      { length: 12_000 },
      (_, i) => `{"t":${1700000000 + i},"level":"info","msg":"served","ms":${i % 97}}\n`,
    ).join(''),
  );
  for (let i = 0; i < TEXT_MIB * MiB; i += log.length) {
    write(log);
    if (i === 10 * log.length) plant(Buffer.from(encodings(ec).pkcs8Pem), 'pem-pkcs8', ec, 'text');
    if (i === 500 * log.length) plant(Buffer.from(encodings(rsa).pkcs1Pem!), 'pem-pkcs1', rsa, 'text');
    if (i === 900 * log.length) plant(Buffer.from(JSON.stringify(ed.privateJwk)), 'jwk', ed, 'text');
  }
  const heapParts: [number, Buffer, string, FixtureKey][] = [
    [4096, ec.secret, 'raw-ec-be', ec],
    [8203, le(ec.secret), 'raw-ec-le', ec],
    [16384, le(ec384.secret), 'raw-ec-le', ec384],
    [20480, ed.secret, 'raw-ed25519-seed', ed],
    [24576, le(rsa.secret), 'raw-rsa-prime-le', rsa],
    [30001, rsa.secondPrime!, 'raw-rsa-prime', rsa],
  ];
  write(Buffer.alloc(4096 - (pos % 4096))); // heap memory is page-aligned in a core
  for (let m = 0; m < HEAP_MIB; m++) {
    let block = heapLike(MiB, m + 1);
    if (m % 4 === 3) {
      for (const [at, bytes, encoding, k] of heapParts) {
        block = plantIn(block, at, bytes);
        expected.push({ offset: pos + at, encoding, kid: k.known.kid, where: `heap ${k.kind}` });
      }
    }
    write(block);
  }
  for (let m = 0; m < RANDOM_MIB; m++) {
    write(randomBytes(MiB));
    if (m === 5) plant(encodings(ec384).pkcs8Der, 'der-pkcs8', ec384, 'random');
    if (m === 9) plant(encodings(ec).sec1Der!, 'der-sec1', ec, 'random');
    if (m === 12) plant(Buffer.from(encodings(ed).pkcs8Pem), 'pem-pkcs8', ed, 'random');
  }
  return expected;
}

/**
 * How much work the raw filters leave on the real core alone (all four key types known),
 * scanned as one buffer (scanPaths reads in chunks, with the same windows tried once each).
 */
function coreStats(core: Buffer, index: KnownKeyIndex): void {
  const raw = new RawScanner(index);
  const spans = nonZeroSpans(core);
  const cpu0 = process.cpuUsage();
  const hits = raw.scan(core, 0, spans);
  const cpu = process.cpuUsage(cpu0);
  const nonZero = spans.reduce((n, [a, b]) => n + b - a, 0);
  console.log(
    `core: ${(core.length / MiB).toFixed(0)} MiB, ${(nonZero / MiB).toFixed(1)} MiB not in zero pages; ` +
      `raw search ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU, ${hits.length} raw hits, ${JSON.stringify(raw.stats)}`,
  );
}

/** Throughput per kind of content: 32 MiB of each, scanned alone. */
async function perContent(dir: string, runs: [string, FixtureKey[]][]): Promise<void> {
  const log = Buffer.from('{"t":1700000000,"level":"info","msg":"served","path":"/v1/items/42","ms":12}\n');
  const kinds: [string, () => Buffer][] = [
    ['zero pages', () => Buffer.alloc(32 * MiB)],
    ['JSON log text', () => Buffer.alloc(32 * MiB, log)],
    ['heap-like', () => Buffer.concat(Array.from({ length: 32 }, (_, i) => heapLike(MiB, 100 + i)))],
    ['random', () => randomBytes(32 * MiB)],
  ];
  console.log('\nper kind of content (32 MiB each; MiB/s of CPU time):');
  for (const [name, make] of kinds) {
    const file = join(dir, 'content.bin');
    writeFileSync(file, make());
    const rates: string[] = [];
    for (const [label, keys] of runs) {
      const cpu0 = process.cpuUsage();
      await scanPaths([file], { knownKeys: keys.map((k) => k.known) });
      const cpu = process.cpuUsage(cpu0);
      rates.push(`${label}: ${(32 / ((cpu.user + cpu.system) / 1e6)).toFixed(0)}`);
    }
    console.log(`  ${name.padEnd(14)} ${rates.join('; ')}`);
    rmSync(file);
  }
}

function seconds(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** When, where and under what load: the numbers mean little without it (shared machines). */
function conditions(when: string): string {
  const cpus = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'latin1'))?.[1] ?? '?';
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  return `${when}: ${new Date().toISOString()}, load average ${load}, CPUs allowed ${cpus}, Node ${process.version}`;
}

async function main(): Promise<void> {
  console.log(conditions('start'));
  const dir = mkdtempSync(join(tmpdir(), 'kw-scan-bench-'));
  try {
    const { core, jwks } = await dumpCore(dir);
    const coreKeys = await Promise.all(
      (['P-256', 'P-384', 'Ed25519', 'RSA'] as const).map((kind) => fromJwk(kind, jwks[kind]!)),
    );
    const planted = await Promise.all(
      (['P-256', 'P-384', 'Ed25519', 'RSA'] as const).map((kind) => makeKey(kind)),
    );
    const coreBytes = readFileSync(core);
    const expected = rawCopies(coreBytes, coreKeys);
    coreStats(coreBytes, await indexKnownKeys(coreKeys.map((k) => k.known)));
    const file = join(dir, 'bench.bin');
    const fd = openSync(file, 'w');
    writeSync(fd, coreBytes);
    expected.push(...appendSynthetic(fd, coreBytes.length, planted));
    closeSync(fd);
    rmSync(core);

    // Output must go to a pipe: with stdout on /dev/null GNU grep stops at the first match.
    let grepCount = '';
    const grepSeconds = seconds(() => {
      try {
        grepCount = execFileSync('grep', ['-c', 'PRIVATE', file], {
          encoding: 'latin1',
          env: { ...process.env, LC_ALL: 'C' },
        });
      } catch (e) {
        grepCount = String((e as { stdout?: string }).stdout ?? '0'); // exit 1 = no match, still a full pass
      }
    });
    console.log(`grep -c PRIVATE: ${grepCount.trim()} lines in ${grepSeconds.toFixed(2)} s`);
    const runs: [string, FixtureKey[]][] = [
      ['all four key types known', [...coreKeys, ...planted]],
      ['one P-256 key known', [planted[0]!]],
    ];
    for (const [label, keys] of runs) {
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const r = await scanPaths([file], { knownKeys: keys.map((k) => k.known) });
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      const kids = new Set(keys.map((k) => k.known.kid));
      const want = expected.filter((e) => kids.has(e.kid));
      const hit = (e: Expected): boolean =>
        r.findings.some(
          (f: Finding) => f.offset === e.offset && f.encoding === e.encoding && f.match?.kid === e.kid,
        );
      const missed = want.filter((e) => !hit(e));
      const mb = r.bytesScanned / MiB;
      console.log(
        `\n${label}: ${mb.toFixed(0)} MiB in ${wall.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU`,
      );
      console.log(
        `  scan ${(mb / wall).toFixed(0)} MiB/s; grep -c PRIVATE ${grepSeconds.toFixed(2)} s (${(mb / grepSeconds).toFixed(0)} MiB/s); ratio scan/grep ${(wall / grepSeconds).toFixed(1)}x`,
      );
      console.log(
        `  copies found: ${want.length - missed.length}/${want.length} (planted + raw copies in the core); findings ${r.findings.length}`,
      );
      for (const m of missed)
        console.log(`  MISSED ${m.encoding} at ${m.offset} (${m.where}, offset % 8 = ${m.offset % 8})`);
      const byEncoding = new Map<string, number>();
      for (const f of r.findings) byEncoding.set(f.encoding, (byEncoding.get(f.encoding) ?? 0) + 1);
      console.log(`  by encoding: ${[...byEncoding].map(([e, n]) => `${e} ${n}`).join(', ')}`);
    }
    await perContent(dir, runs);
    console.log(conditions('\nend'));
  } finally {
    if (!process.argv.includes('--keep')) rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
}

void main();
