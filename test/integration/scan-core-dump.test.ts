import { strict as assert } from 'node:assert';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { PublicJwk } from '../../src/policy/key';
import { scanPaths, type KnownKey } from '../../src/scan';

/**
 * A process that held a software key in Node crypto is dumped with gdb's gcore, and the
 * scanner must find that key in the core: the Storm-0558 case (a signing key in a crash dump).
 */

// The child holds a P-256 key in Node crypto the way a careless service would: imported from
// a JWK, used to sign, kept alive. It prints only the public JWK, then waits to be dumped.
const CHILD = `
const c = require('node:crypto');
const { privateKey } = c.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const key = c.createPrivateKey({ key: privateKey.export({ format: 'jwk' }), format: 'jwk' });
for (let i = 0; i < 3; i++) c.sign('sha256', Buffer.from('token ' + i), key);
const { kty, crv, x, y } = c.createPublicKey(key).export({ format: 'jwk' });
globalThis.held = key;
process.stdout.write(JSON.stringify({ kty, crv, x, y }) + '\\n');
setInterval(() => {}, 1000);
`;

interface Held {
  child: ChildProcess;
  publicJwk: PublicJwk;
}

function startChild(): Promise<Held> {
  const child = spawn(process.execPath, ['-e', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      resolve({ child, publicJwk: JSON.parse(line) as PublicJwk });
    });
  });
}

function stop(child: ChildProcess | undefined): void {
  if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
}

/** Runs `gcore -o <dir>/core <pid>`; returns the core path, or the reason gcore could not attach. */
function gcore(dir: string, pid: number): Promise<{ core: string } | { denied: string }> {
  return new Promise((resolve, reject) => {
    execFile('gcore', ['-o', join(dir, 'core'), String(pid)], { timeout: 60_000 }, (err, stdout, stderr) => {
      const core = readdirSync(dir).find((f) => f.startsWith('core.'));
      if (core !== undefined && err === null) return resolve({ core: join(dir, core) });
      const text = `${stdout}\n${stderr}`;
      if (/ptrace|Operation not permitted|could not attach|not permitted/i.test(text)) {
        return resolve({ denied: text.trim().split('\n').slice(-3).join(' | ') });
      }
      reject(new Error(`gcore failed: ${err?.message ?? 'no core written'}\n${text}`));
    });
  });
}

async function known(publicJwk: PublicJwk): Promise<KnownKey> {
  const kid = await calculateJwkThumbprint(publicJwk as JWK, 'sha256');
  return { kid, scope: 'consumer', state: 'active', publicJwk };
}

describe('scan: a software key in a core dump (gcore)', function () {
  this.timeout(120_000);
  let dir = '';
  let held: Held | undefined;
  let other: Held | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kw-core-'));
  });
  after(() => {
    stop(held?.child);
    stop(other?.child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds the private key of a known key in the core of the process that used it', async function () {
    held = await startChild();
    const dumped = await gcore(dir, held.child.pid!);
    if ('denied' in dumped) {
      // Only when the kernel or container forbids ptrace: nothing here can dump a process.
      console.log(`      gcore could not attach (ptrace not permitted): ${dumped.denied}`);
      this.skip();
    }
    stop(held.child);
    const key = await known(held.publicJwk);
    const result = await scanPaths([dumped.core], { knownKeys: [key] });
    rmSync(dumped.core, { force: true });
    const encodings = result.findings.map((f) => f.encoding);
    assert.ok(result.bytesScanned > 10 * 1024 * 1024, 'a real core is tens of MiB at least');
    assert.ok(result.findings.length >= 1, 'the key was not found in the core');
    assert.ok(
      result.findings.every((f) => f.match?.kid === key.kid && f.fingerprint === key.kid),
      JSON.stringify(result.findings),
    );
    // OpenSSL keeps the scalar as BIGNUM words: little-endian in memory.
    assert.ok(encodings.includes('raw-ec-le'), `encodings found: ${encodings.join(', ')}`);
  });

  it('finds no match for a known key in the core of a process that used a different key', async function () {
    assert.ok(held !== undefined, 'the first test must have started the known key holder');
    other = await startChild();
    const dumped = await gcore(dir, other.child.pid!);
    if ('denied' in dumped) {
      console.log(`      gcore could not attach (ptrace not permitted): ${dumped.denied}`);
      this.skip();
    }
    stop(other.child);
    const absent = await known(held.publicJwk);
    const present = await known(other.publicJwk);
    const result = await scanPaths([dumped.core], { knownKeys: [absent, present] });
    rmSync(dumped.core, { force: true });
    assert.ok(result.bytesScanned > 10 * 1024 * 1024);
    assert.deepEqual(
      result.findings.filter((f) => f.match?.kid === absent.kid),
      [],
    );
    // The key this process did use is found in the same scan: the scan did look.
    assert.ok(result.findings.some((f) => f.match?.kid === present.kid));
  });
});
