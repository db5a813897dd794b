/**
 * Whether an `If-None-Match` field value matches `etag` (RFC 9110 §13.1.2): `*`, or any listed
 * entity tag equal to it by weak comparison (a `W/` prefix on either side is ignored). Proxies
 * that compress a response (nginx's gzip, for one) turn a strong ETag into a weak one, and caches
 * may send several tags: both still deserve a 304.
 *
 * Splitting on commas is exact here because `etag` (a quoted base64url digest, build-jwks.ts)
 * holds no comma: a listed tag that contains one cannot equal it whichever way it is split.
 */
export function ifNoneMatchHits(fieldValue: string | undefined, etag: string): boolean {
  if (fieldValue === undefined) return false;
  if (fieldValue === etag) return true; // what a relying party sends back, the common case
  const opaque = stripWeak(etag);
  for (const listed of fieldValue.split(',')) {
    const tag = listed.trim();
    if (tag === '*' || stripWeak(tag) === opaque) return true;
  }
  return false;
}

function stripWeak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}
