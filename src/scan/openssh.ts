import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';

/**
 * Reader for the `openssh-key-v1` container (PROTOCOL.key in OpenSSH). node:crypto cannot
 * read it, and the format is plain SSH wire framing (uint32-length strings), not ASN.1, so a
 * small reader is enough: it pulls the key fields out, and node:crypto then builds and checks
 * the key from a JWK. The public key sits in clear even when the private part is encrypted,
 * which lets an encrypted OpenSSH key still be matched by its public half.
 */
export interface OpenSshKey {
  encrypted: boolean;
  publicJwk: JWK | undefined;
  privateKey: KeyObject | null;
}

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const CURVES: Record<string, { crv: string; bytes: number }> = {
  nistp256: { crv: 'P-256', bytes: 32 },
  nistp384: { crv: 'P-384', bytes: 48 },
  nistp521: { crv: 'P-521', bytes: 66 },
};

class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number {
    if (this.pos + 4 > this.buf.length) throw new Error('truncated');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(): Buffer {
    const len = this.u32();
    if (this.pos + len > this.buf.length) throw new Error('truncated');
    const v = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return v;
  }
  text(): string {
    return this.bytes().toString('latin1');
  }
  /** An SSH mpint as unsigned big-endian bytes without leading zeros. */
  mpint(): Buffer {
    const v = this.bytes();
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    return v.subarray(i);
  }
}

const b64 = (b: Buffer): string => b.toString('base64url');
const big = (b: Buffer): bigint => BigInt('0x' + (b.length === 0 ? '0' : b.toString('hex')));
const unbig = (v: bigint): Buffer => {
  const hex = v.toString(16);
  return Buffer.from(hex.length % 2 === 1 ? '0' + hex : hex, 'hex');
};
const pad = (b: Buffer, n: number): Buffer =>
  b.length >= n ? b : Buffer.concat([Buffer.alloc(n - b.length), b]);

function ecPoint(q: Buffer, bytes: number): { x: string; y: string } {
  if (q.length !== 1 + 2 * bytes || q[0] !== 4) throw new Error('bad EC point');
  return { x: b64(q.subarray(1, 1 + bytes)), y: b64(q.subarray(1 + bytes)) };
}

function readPublic(blob: Buffer): JWK {
  const r = new Reader(blob);
  const type = r.text();
  if (type === 'ssh-ed25519') return { kty: 'OKP', crv: 'Ed25519', x: b64(r.bytes()) };
  if (type === 'ssh-rsa') {
    const e = r.mpint();
    return { kty: 'RSA', n: b64(r.mpint()), e: b64(e) };
  }
  const curve = CURVES[r.text()];
  if (!type.startsWith('ecdsa-sha2-') || curve === undefined) throw new Error(`unsupported ${type}`);
  return { kty: 'EC', crv: curve.crv, ...ecPoint(r.bytes(), curve.bytes) };
}

function readPrivate(r: Reader): JWK {
  const type = r.text();
  if (type === 'ssh-ed25519') {
    const x = r.bytes();
    const secret = r.bytes(); // seed || public
    return { kty: 'OKP', crv: 'Ed25519', x: b64(x), d: b64(secret.subarray(0, 32)) };
  }
  if (type === 'ssh-rsa') {
    const [n, e, d, qi, p, q] = [r.mpint(), r.mpint(), r.mpint(), r.mpint(), r.mpint(), r.mpint()];
    const [dB, pB, qB] = [big(d), big(p), big(q)];
    const dp = unbig(dB % (pB - 1n));
    const dq = unbig(dB % (qB - 1n));
    return {
      kty: 'RSA',
      n: b64(n),
      e: b64(e),
      d: b64(d),
      p: b64(p),
      q: b64(q),
      dp: b64(dp),
      dq: b64(dq),
      qi: b64(qi),
    };
  }
  const curve = CURVES[r.text()];
  if (!type.startsWith('ecdsa-sha2-') || curve === undefined) throw new Error(`unsupported ${type}`);
  const point = ecPoint(r.bytes(), curve.bytes);
  return { kty: 'EC', crv: curve.crv, ...point, d: b64(pad(r.mpint(), curve.bytes)) };
}

/** Parses the binary body of an `OPENSSH PRIVATE KEY` PEM block; throws when it is not one. */
export function parseOpenSsh(body: Buffer): OpenSshKey {
  if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not openssh-key-v1');
  const r = new Reader(body.subarray(MAGIC.length));
  const cipher = r.text();
  r.text(); // kdf name
  r.bytes(); // kdf options
  if (r.u32() < 1) throw new Error('no keys');
  let publicJwk: JWK | undefined;
  try {
    publicJwk = readPublic(r.bytes());
  } catch {
    publicJwk = undefined; // an algorithm keywarden does not manage: still a private key
  }
  const section = r.bytes();
  if (cipher !== 'none') return { encrypted: true, publicJwk, privateKey: null };
  const s = new Reader(section);
  if (s.u32() !== s.u32()) throw new Error('check words differ');
  const privateKey = createPrivateKey({ key: readPrivate(s), format: 'jwk' });
  return { encrypted: false, publicJwk, privateKey };
}
