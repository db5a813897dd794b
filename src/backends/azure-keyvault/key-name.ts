import { createHash } from 'node:crypto';

/** Key Vault object names: 1-127 characters, ASCII letters, digits and dashes. */
export const MAX_KEY_NAME_LENGTH = 127;
const NAME_RE = /^[0-9A-Za-z-]{1,127}$/;

/** Tags keywarden writes on every key it creates (Key Vault keeps tags per key version). */
export const TAG_SCOPE = 'keywarden-scope';
export const TAG_KEY_ID = 'keywarden-key-id';

/** True for a string Key Vault accepts as a key name. */
export function isValidKeyName(name: string): boolean {
  return NAME_RE.test(name);
}

/**
 * The Key Vault key name for one keywarden key: `${keyPrefix}-${scope}-${keyId}`, with every
 * character Key Vault refuses replaced by `-`. Pure and deterministic, so planKey can record it
 * before anything exists. When the result would exceed 127 characters, the scope part is cut and
 * a hash of the full, unsanitized triple is inserted so two long names never collide; the prefix
 * and the start of the name stay recognisable for list().
 */
export function keyName(keyPrefix: string, scope: string, keyId: string): string {
  const clean = (s: string): string => s.replace(/[^0-9A-Za-z-]/g, '-');
  const full = `${clean(keyPrefix)}-${clean(scope)}-${clean(keyId)}`;
  if (full.length <= MAX_KEY_NAME_LENGTH && clean(scope) === scope && clean(keyId) === keyId) return full;
  // Sanitizing can map two inputs onto one name ("a_b" and "a.b"); the hash keeps them apart.
  const hash = createHash('sha256').update(`${keyPrefix}\0${scope}\0${keyId}`).digest('hex').slice(0, 16);
  const tail = `-${hash}`;
  return `${full.slice(0, MAX_KEY_NAME_LENGTH - tail.length)}${tail}`;
}

/** The name prefix every key of this backend carries (`${keyPrefix}-`), for list(). */
export function keyNamePrefix(keyPrefix: string): string {
  return `${keyPrefix.replace(/[^0-9A-Za-z-]/g, '-')}-`;
}
