import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * scrypt cost parameters for new hashes. An API secret carries 256 random bits, so the hash
 * does not have to make guessing hard the way a password hash must; scrypt's cost is there so
 * a stolen clients table is still not a fast oracle. N=2^14, r=8 (scrypt's "interactive" setting)
 * needs 16 MiB and tens of milliseconds; the daemon verifies each secret once per cache
 * lifetime, not per request (see ClientAuthenticator).
 */
export const SCRYPT_PARAMS = { N: 1 << 14, r: 8, p: 1 } as const;

const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Upper bounds on parameters read back from the store: a tampered row must not become a DoS. */
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;

function scryptAsync(secret: string, salt: Buffer, len: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    // The callback form runs on libuv's thread pool, so the event loop keeps serving.
    scrypt(secret, salt, len, o, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

const maxmem = (N: number, r: number, p: number) => 128 * r * (N + p + 2) + 1024 * 1024;

/**
 * Hashes a secret for storage as `scrypt$N$r$p$salt$hash` (salt and hash base64url), with a
 * fresh random salt per secret.
 */
export async function hashSecret(secret: string): Promise<string> {
  const { N, r, p } = SCRYPT_PARAMS;
  const salt = randomBytes(SALT_BYTES);
  const hash = await scryptAsync(secret, salt, HASH_BYTES, { N, r, p, maxmem: maxmem(N, r, p) });
  return ['scrypt', N, r, p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

/**
 * True when `secret` matches a hash made by hashSecret. Constant-time comparison; a malformed
 * or out-of-bounds stored value is simply a mismatch (never an exception, never a slow path).
 */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (!Number.isInteger(N) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0) return false;
  if (!Number.isInteger(r) || r < 1 || r > MAX_R || !Number.isInteger(p) || p < 1 || p > MAX_P) return false;
  const salt = Buffer.from(parts[4] ?? '', 'base64url');
  const expected = Buffer.from(parts[5] ?? '', 'base64url');
  if (salt.length < 8 || expected.length < 16) return false;
  let actual: Buffer;
  try {
    actual = await scryptAsync(secret, salt, expected.length, { N, r, p, maxmem: maxmem(N, r, p) });
  } catch {
    return false;
  }
  return timingSafeEqual(actual, expected);
}
