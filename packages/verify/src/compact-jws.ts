import { parseJsonObject } from './strict-json.js';

/** The parts of a compact JWS whose header and payload are JSON objects. */
export interface DecodedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** ASCII bytes of `base64url(header) '.' base64url(payload)`: what the signature covers. */
  signingInput: Buffer;
  signature: Buffer;
}

export type DecodeResult =
  | { ok: true; jws: DecodedJws }
  | { ok: false; reason: 'token_malformed' | 'duplicate_member'; message: string };

// fatal: invalid UTF-8 is malformed, not silently replaced with U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Splits and decodes a compact JWS strictly: exactly three parts, canonical unpadded
 * base64url, UTF-8 JSON objects without duplicate member names.
 */
export function decodeCompactJws(token: string): DecodeResult {
  const dot1 = token.indexOf('.');
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot2 < 0 || token.indexOf('.', dot2 + 1) >= 0) {
    return malformed('a compact JWS has exactly three dot-separated parts');
  }
  const headerBytes = decodeBase64url(token.slice(0, dot1));
  const payloadBytes = decodeBase64url(token.slice(dot1 + 1, dot2));
  // An empty signature is well-formed JWS (it is what alg "none" looks like): the header
  // rules then refuse it with the precise reason, and no allowed alg verifies it.
  const signatureText = token.slice(dot2 + 1);
  const signature = signatureText.length === 0 ? Buffer.alloc(0) : decodeBase64url(signatureText);
  if (!headerBytes || !payloadBytes || !signature) {
    return malformed('header and payload must be non-empty, and every part unpadded base64url');
  }

  const header = parseObject(headerBytes, 'header');
  if (!header.ok) return header;
  const payload = parseObject(payloadBytes, 'payload');
  if (!payload.ok) return payload;
  return {
    ok: true,
    jws: {
      header: header.value,
      payload: payload.value,
      // Validated base64url is ASCII, so latin1 gives the exact bytes without a UTF-8 pass.
      signingInput: Buffer.from(token.slice(0, dot2), 'latin1'),
      signature,
    },
  };
}

/**
 * Node's decoder skips characters outside the alphabet and accepts padding; re-encoding and
 * comparing refuses all of that plus non-canonical trailing bits, so one token has one spelling.
 */
export function decodeBase64url(text: string): Buffer | undefined {
  if (text.length === 0) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

function parseObject(
  bytes: Buffer,
  part: 'header' | 'payload',
):
  | { ok: true; value: Record<string, unknown> }
  | { ok: false; reason: 'token_malformed' | 'duplicate_member'; message: string } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return malformed(`the ${part} is not valid UTF-8`);
  }
  const parsed = parseJsonObject(text);
  if (parsed.ok) return parsed;
  if (parsed.problem === 'duplicate_member') {
    return {
      ok: false,
      reason: 'duplicate_member',
      message: `the ${part} repeats the member ${JSON.stringify(parsed.member)}`,
    };
  }
  return malformed(`the ${part} is not a JSON object`);
}

function malformed(message: string): { ok: false; reason: 'token_malformed'; message: string } {
  return { ok: false, reason: 'token_malformed', message };
}
