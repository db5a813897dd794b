/** Bounds applied to a JWKS response's freshness lifetime. */
export interface CacheLifetimeBounds {
  /** Never cache longer than this, whatever the server says. */
  maxSeconds: number;
  /** Lifetime when the response has no usable max-age (absent, no-store, no-cache). */
  defaultSeconds: number;
  /** Floor, so `max-age=0` cannot turn every verify into a fetch. */
  minSeconds: number;
}

/**
 * How long a JWKS response may be used, from its `Cache-Control` max-age minus its `Age`
 * (time already spent in shared caches), clamped to the bounds. `no-store`/`no-cache` or a
 * missing max-age give the short default: the keys are still needed, so they are kept
 * briefly rather than fetched on every token.
 */
export function cacheLifetimeSeconds(
  cacheControl: string | null,
  age: string | null,
  bounds: CacheLifetimeBounds,
): number {
  const clamp = (s: number) => Math.min(bounds.maxSeconds, Math.max(bounds.minSeconds, s));
  let maxAge: number | undefined;
  for (const raw of (cacheControl ?? '').split(',')) {
    const directive = raw.trim().toLowerCase();
    if (directive === 'no-store' || directive === 'no-cache') return clamp(bounds.defaultSeconds);
    const m = /^max-age\s*=\s*"?(\d+)"?$/.exec(directive);
    // RFC 9111 §4.2.1: with duplicate max-age directives the response is treated as stale.
    if (m) maxAge = maxAge === undefined ? Number(m[1]) : 0;
  }
  if (maxAge === undefined) return clamp(bounds.defaultSeconds);
  const ageSeconds = age !== null && /^\d+$/.test(age.trim()) ? Number(age.trim()) : 0;
  return clamp(maxAge - ageSeconds);
}
