/**
 * Canonical JSON for hashing: object keys sorted by UTF-16 code units, no whitespace, numbers and
 * strings as ECMAScript's JSON.stringify writes them. For the JSON values audit records hold
 * (strings, finite numbers, booleans, null, arrays, plain objects) this is RFC 8785 (JCS).
 * Anything that would not survive a JSON round trip unchanged is refused rather than guessed.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value))
        throw new TypeError(`canonical JSON: ${String(value)} is not a JSON number`);
      return JSON.stringify(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError('canonical JSON: only plain objects (normalise Dates and classes first)');
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON: a ${typeof value} is not a JSON value`);
  }
}
