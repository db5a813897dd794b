import { createPrivateKey } from 'node:crypto';
import type { Hit } from './identify';

/** Longest DER private key considered (RSA-16384 PKCS#8 is ~9.3 KiB). */
export const MAX_DER_BYTES = 16 * 1024;

type DerType = 'pkcs1' | 'pkcs8' | 'sec1';

/**
 * The bytes that follow a private key's SEQUENCE header, and what each start means:
 * PKCS#1 RSAPrivateKey  = SEQUENCE { INTEGER 0, INTEGER n, ... }
 * PKCS#8 PrivateKeyInfo = SEQUENCE { INTEGER 0|1, SEQUENCE algorithm, OCTET STRING key, ... }
 * SEC1 ECPrivateKey     = SEQUENCE { INTEGER 1, OCTET STRING d, ... }
 * Searching for these 4-byte openings with Buffer.indexOf (native, fast) and then checking
 * the header in front is far cheaper than trying every 0x30 byte.
 */
const OPENINGS: { bytes: Buffer; type: DerType }[] = [
  { bytes: Buffer.from([0x02, 0x01, 0x00, 0x02]), type: 'pkcs1' },
  { bytes: Buffer.from([0x02, 0x01, 0x00, 0x30]), type: 'pkcs8' },
  { bytes: Buffer.from([0x02, 0x01, 0x01, 0x30]), type: 'pkcs8' },
  { bytes: Buffer.from([0x02, 0x01, 0x01, 0x04]), type: 'sec1' },
];

/**
 * Finds DER private keys anywhere in `buf`. A candidate is confirmed only by node:crypto
 * parsing exactly the bytes the SEQUENCE header claims; nothing is reported on shape alone.
 */
export function findDer(buf: Buffer): Hit[] {
  const hits: Hit[] = [];
  for (const { bytes, type } of OPENINGS) {
    for (let v = buf.indexOf(bytes); v !== -1; v = buf.indexOf(bytes, v + 1)) {
      const span = sequenceBefore(buf, v);
      if (span === undefined || !plausibleBody(buf, v, type)) continue;
      try {
        const key = createPrivateKey({ key: buf.subarray(span.start, span.end), format: 'der', type });
        hits.push({
          offset: span.start,
          length: span.end - span.start,
          encoding: `der-${type}`,
          privateKey: key,
        });
      } catch {
        // Shape matched but it is not a key: random bytes, a certificate fragment, ...
      }
    }
  }
  return hits;
}

/** The SEQUENCE whose content starts at `v`, if a definite-length header ends exactly there. */
function sequenceBefore(buf: Buffer, v: number): { start: number; end: number } | undefined {
  // Short form: 30 LL (LL < 0x80); long forms: 30 81 LL, 30 82 HH LL.
  const candidates: [number, () => number | undefined][] = [
    [v - 2, () => (buf[v - 1]! < 0x80 ? buf[v - 1] : undefined)],
    [v - 3, () => (buf[v - 2] === 0x81 && buf[v - 1]! >= 0x80 ? buf[v - 1] : undefined)],
    [v - 4, () => (buf[v - 3] === 0x82 ? buf.readUInt16BE(v - 2) : undefined)],
  ];
  for (const [start, lengthOf] of candidates) {
    if (start < 0 || buf[start] !== 0x30) continue;
    const len = lengthOf();
    if (len === undefined || len < 8) continue;
    const end = v + len;
    if (end <= buf.length && end - start <= MAX_DER_BYTES) return { start, end };
  }
  return undefined;
}

/** The element after the version must have the right tag; skips most false openings cheaply. */
function plausibleBody(buf: Buffer, v: number, type: DerType): boolean {
  const next = v + 3;
  if (type === 'pkcs1') return buf[next] === 0x02 && (buf[next + 1] === 0x81 || buf[next + 1] === 0x82);
  if (type === 'pkcs8') return buf[next] === 0x30 && buf[next + 2] === 0x06;
  const len = buf[next + 1];
  return buf[next] === 0x04 && len !== undefined && len >= 28 && len <= 66;
}
