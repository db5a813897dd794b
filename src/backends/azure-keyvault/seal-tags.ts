/**
 * A key's seal on Key Vault lives in tags of the key version (only principals allowed to update
 * keys can write tags; the store cannot). A tag value holds at most 256 characters, so the seal
 * is split over `keywarden-seal-0`, `keywarden-seal-1`, ... (an RSA-3072 seal needs three).
 */
export const SEAL_TAG_PREFIX = 'keywarden-seal-';
const CHUNK = 250;
/** Key Vault allows 15 tags per key version; keywarden's scope and key id tags take two. */
const MAX_CHUNKS = 8;

/** The tags that carry `seal`. */
export function sealTags(seal: Uint8Array): Record<string, string> {
  const text = Buffer.from(seal).toString('latin1');
  const tags: Record<string, string> = {};
  for (let i = 0; i * CHUNK < text.length; i++)
    tags[`${SEAL_TAG_PREFIX}${i}`] = text.slice(i * CHUNK, (i + 1) * CHUNK);
  if (Object.keys(tags).length > MAX_CHUNKS) throw new RangeError('a key seal longer than the tags can hold');
  return tags;
}

/** The seal the tags carry, or null when they carry none. */
export function sealFromTags(tags: Readonly<Record<string, string>> | undefined): Buffer | null {
  if (!tags || tags[`${SEAL_TAG_PREFIX}0`] === undefined) return null;
  let text = '';
  for (let i = 0; i < MAX_CHUNKS; i++) {
    const part = tags[`${SEAL_TAG_PREFIX}${i}`];
    if (part === undefined) break;
    text += part;
  }
  return Buffer.from(text, 'latin1');
}
