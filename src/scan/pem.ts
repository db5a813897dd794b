import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { Hit } from './identify';
import { parseOpenSsh } from './openssh';
import type { Encoding } from './types';

/** Longest PEM block considered (an RSA-16384 PKCS#8 PEM is ~12 KiB). */
export const MAX_PEM_BYTES = 32 * 1024;

const BEGIN = Buffer.from('-----BEGIN ', 'latin1');
const DASHES = Buffer.from('-----', 'latin1');
const LABEL = /^[A-Z0-9 ]{1,40}$/;
/** Characters allowed between header and footer once line breaks and `\n` escapes are removed. */
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

const DER_TYPE: Record<string, { encoding: Encoding; type: 'pkcs1' | 'pkcs8' | 'sec1' }> = {
  'RSA PRIVATE KEY': { encoding: 'pem-pkcs1', type: 'pkcs1' },
  'PRIVATE KEY': { encoding: 'pem-pkcs8', type: 'pkcs8' },
  'EC PRIVATE KEY': { encoding: 'pem-sec1', type: 'sec1' },
};

/**
 * Finds PEM private-key blocks anywhere in `buf`: in text files, in binary data (the text of a
 * PEM is often copied whole into memory) and inside JSON strings where line breaks are written
 * as `\n`. Every block is parsed by node:crypto; a block that does not parse is not reported.
 */
export function findPem(buf: Buffer): Hit[] {
  const hits: Hit[] = [];
  for (let at = buf.indexOf(BEGIN); at !== -1; at = buf.indexOf(BEGIN, at + 1)) {
    const labelStart = at + BEGIN.length;
    // Searches are bounded so that many headers without footers cannot make this quadratic.
    const labelEnd = indexWithin(buf, DASHES, labelStart, labelStart + 48);
    if (labelEnd === -1) continue;
    const label = buf.toString('latin1', labelStart, labelEnd);
    if (!LABEL.test(label) || !label.endsWith('PRIVATE KEY')) continue;
    const bodyStart = labelEnd + DASHES.length;
    const footer = Buffer.from(`-----END ${label}-----`, 'latin1');
    const footerAt = indexWithin(buf, footer, bodyStart, at + MAX_PEM_BYTES);
    if (footerAt === -1) continue;
    const hit = parseBlock(label, buf.toString('latin1', bodyStart, footerAt));
    if (hit === undefined) continue;
    hits.push({ offset: at, length: footerAt + footer.length - at, ...hit });
  }
  return hits;
}

/** buf.indexOf(needle, from), looking only at needles that end before `limit`. */
function indexWithin(buf: Buffer, needle: Buffer, from: number, limit: number): number {
  return buf.subarray(0, Math.min(buf.length, limit)).indexOf(needle, from);
}

type Parsed = Omit<Hit, 'offset' | 'length'>;

function parseBlock(label: string, rawBody: string): Parsed | undefined {
  // Legacy OpenSSL encryption puts `Proc-Type: 4,ENCRYPTED` and `DEK-Info:` lines first.
  const lines = rawBody.replace(/\\r|\\n/g, '\n').split(/[\r\n]+/);
  const headers = lines.filter((l) => l.includes(':'));
  const body = lines
    .filter((l) => !l.includes(':'))
    .join('')
    .replace(/\s+/g, '');
  if (body.length < 16 || !BASE64.test(body)) return undefined;
  const der = Buffer.from(body, 'base64');
  if (headers.some((h) => /^\s*Proc-Type:.*ENCRYPTED/.test(h))) {
    return { encoding: 'pem-legacy-encrypted', privateKey: null };
  }
  if (label === 'ENCRYPTED PRIVATE KEY') {
    return der[0] === 0x30 ? { encoding: 'pem-pkcs8-encrypted', privateKey: null } : undefined;
  }
  if (label === 'OPENSSH PRIVATE KEY') {
    try {
      const k = parseOpenSsh(der);
      return {
        encoding: k.encrypted ? 'pem-openssh-encrypted' : 'pem-openssh',
        privateKey: k.privateKey,
        ...(k.encrypted && k.publicJwk !== undefined ? { publicJwk: k.publicJwk } : {}),
      };
    } catch {
      return undefined;
    }
  }
  const known = DER_TYPE[label];
  let privateKey: KeyObject;
  try {
    privateKey =
      known === undefined
        ? createPrivateKey(
            `-----BEGIN ${label}-----\n${body.replace(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`,
          )
        : createPrivateKey({ key: der, format: 'der', type: known.type });
  } catch {
    return undefined;
  }
  return { encoding: known?.encoding ?? 'pem-other', privateKey };
}
