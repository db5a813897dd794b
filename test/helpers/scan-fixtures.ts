import { execFileSync } from 'node:child_process';
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { PublicJwk } from '../../src/policy/key';
import type { KnownKey } from '../../src/scan';

export type FixtureKind = 'P-256' | 'P-384' | 'Ed25519' | 'RSA';

/** A key shaped like a managed one: its private half (for planting) and its KnownKey entry. */
export interface FixtureKey {
  kind: FixtureKind;
  privateKey: KeyObject;
  privateJwk: JWK;
  known: KnownKey;
  /** The secret bytes a raw scan looks for: EC scalar / Ed25519 seed (big-endian), RSA p. */
  secret: Buffer;
  /** RSA only: the other prime. */
  secondPrime?: Buffer;
}

/** Generates a key with node:crypto and its KnownKey (kid = RFC 7638 thumbprint). */
export async function makeKey(kind: FixtureKind, scope = 'consumer', state = 'active'): Promise<FixtureKey> {
  const privateKey =
    kind === 'RSA'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
      : kind === 'Ed25519'
        ? generateKeyPairSync('ed25519').privateKey
        : generateKeyPairSync('ec', { namedCurve: kind }).privateKey;
  const privateJwk = privateKey.export({ format: 'jwk' }) as JWK;
  const { kty, crv, x, y, n, e } = createPublicKey(privateKey).export({ format: 'jwk' }) as Record<
    string,
    string
  >;
  const publicJwk = JSON.parse(JSON.stringify({ kty, crv, x, y, n, e })) as PublicJwk;
  const kid = await calculateJwkThumbprint(publicJwk as JWK, 'sha256');
  const secret = Buffer.from(kind === 'RSA' ? privateJwk.p! : privateJwk.d!, 'base64url');
  return {
    kind,
    privateKey,
    privateJwk,
    known: { kid, scope, state, publicJwk },
    secret,
    ...(kind === 'RSA' ? { secondPrime: Buffer.from(privateJwk.q!, 'base64url') } : {}),
  };
}

/** Byte-reversed copy: how OpenSSL's BIGNUM words hold a number on little-endian x86-64. */
export function le(b: Buffer): Buffer {
  return Buffer.from(b).reverse();
}

/**
 * Filler that looks like process heap: malloc size headers, 64-bit pointers, small integers,
 * zero padding and short random blobs (hashes, ids). Deterministic for a given seed.
 */
export function heapLike(bytes: number, seed = 1): Buffer {
  const out = Buffer.alloc(bytes);
  let state = seed >>> 0 || 1;
  const rnd = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  for (let o = 0; o + 8 <= bytes; o += 8) {
    const kind = rnd() % 32;
    if (kind < 12) out.writeBigUInt64LE(0x7f0000000000n + BigInt(rnd() % 0x10000000) * 16n, o);
    else if (kind < 16) out.writeBigUInt64LE(BigInt(rnd() % 4096), o);
    else if (kind === 16 && o + 24 <= bytes) {
      for (let i = 0; i < 16; i++) out[o + i] = rnd() & 0xff;
      o += 8;
    }
  }
  return out;
}

/**
 * A copy of `filler` with `material` at `at` as in a glibc heap chunk: right after an 8-byte
 * size header, and followed (at the next 8-byte boundary) by the next chunk's size header.
 */
export function plantIn(filler: Buffer, at: number, material: Buffer): Buffer {
  const out = Buffer.from(filler);
  if (at >= 8) out.writeBigUInt64LE(BigInt(material.length + 16) | 1n, at - 8);
  material.copy(out, at);
  const next = Math.ceil((at + material.length) / 8) * 8;
  out.fill(0, at + material.length, next);
  if (next + 8 <= out.length) out.writeBigUInt64LE(0x41n, next);
  return out;
}

/** Writes files into a fresh temporary directory; `cleanup()` removes it. */
export function tempDir(): {
  dir: string;
  write(name: string, data: Buffer | string): string;
  cleanup(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'kw-scan-'));
  return {
    dir,
    write(name, data) {
      const path = join(dir, name);
      writeFileSync(path, data);
      return path;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** True when ssh-keygen is installed (package openssh-client). */
export function hasSshKeygen(): boolean {
  try {
    execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    return (e as { status?: number }).status !== undefined && (e as { status?: number }).status !== 127;
  }
}

/**
 * The key in OpenSSH's own `openssh-key-v1` format, written by the real ssh-keygen (it
 * rewrites a PEM key file in place with `-p`). With a passphrase the private part is encrypted.
 */
export function toOpenSsh(key: KeyObject, passphrase = ''): string {
  const t = tempDir();
  try {
    const path = t.write('id', key.export({ format: 'pem', type: 'pkcs8' }) as string);
    chmodSync(path, 0o600);
    execFileSync('ssh-keygen', ['-p', '-q', '-P', '', '-N', passphrase, '-f', path], { stdio: 'ignore' });
    const text = readFileSync(path, 'latin1');
    if (!text.startsWith('-----BEGIN OPENSSH PRIVATE KEY-----'))
      throw new Error('ssh-keygen did not write openssh-key-v1');
    return text;
  } finally {
    t.cleanup();
  }
}

/**
 * An Ed25519 key made by ssh-keygen itself (OpenSSH cannot import an Ed25519 PKCS#8 PEM),
 * as its private file text and its KnownKey (public key from the `.pub` file).
 */
export async function sshKeygenEd25519(passphrase = ''): Promise<{ text: string; known: KnownKey }> {
  const t = tempDir();
  try {
    const path = join(t.dir, 'id');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', '', '-f', path], {
      stdio: 'ignore',
    });
    const blob = Buffer.from(readFileSync(`${path}.pub`, 'latin1').split(' ')[1]!, 'base64');
    const typeLen = blob.readUInt32BE(0);
    const x = blob.subarray(4 + typeLen + 4, 4 + typeLen + 4 + 32).toString('base64url');
    const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x };
    const kid = await calculateJwkThumbprint(publicJwk as JWK, 'sha256');
    return { text: readFileSync(path, 'latin1'), known: { kid, scope: 'ops', state: 'active', publicJwk } };
  } finally {
    t.cleanup();
  }
}

/** PEM/DER encodings of a fixture key, from node:crypto. */
export function encodings(k: FixtureKey): {
  pkcs8Pem: string;
  pkcs8Der: Buffer;
  pkcs1Pem?: string;
  pkcs1Der?: Buffer;
  sec1Pem?: string;
  sec1Der?: Buffer;
} {
  const pk = k.privateKey;
  const out: ReturnType<typeof encodings> = {
    pkcs8Pem: pk.export({ format: 'pem', type: 'pkcs8' }) as string,
    pkcs8Der: pk.export({ format: 'der', type: 'pkcs8' }),
  };
  if (k.kind === 'RSA') {
    out.pkcs1Pem = pk.export({ format: 'pem', type: 'pkcs1' }) as string;
    out.pkcs1Der = pk.export({ format: 'der', type: 'pkcs1' });
  }
  if (k.kind === 'P-256' || k.kind === 'P-384') {
    out.sec1Pem = pk.export({ format: 'pem', type: 'sec1' }) as string;
    out.sec1Der = pk.export({ format: 'der', type: 'sec1' });
  }
  return out;
}

/** Random bytes (incompressible noise, as in encrypted or compressed data). */
export function noise(bytes: number): Buffer {
  return randomBytes(bytes);
}

/** Parses a PEM to check fixtures are what they claim. */
export function parses(pem: string): boolean {
  try {
    createPrivateKey(pem);
    return true;
  } catch {
    return false;
  }
}
