/**
 * JSON.parse silently keeps the last of two members with the same name, and other parsers keep
 * the first: a token with `{"kid":"a","kid":"b"}` can mean different things to different
 * verifiers. RFC 7515 §5.2 lets a receiver reject such input; we do, at every nesting level.
 */
export type StrictJsonResult =
  | { ok: true; value: Record<string, unknown> }
  | { ok: false; problem: 'not_json' | 'not_object' }
  | { ok: false; problem: 'duplicate_member'; member: string };

/** Parses `text` as a JSON object, refusing duplicate member names anywhere inside it. */
export function parseJsonObject(text: string): StrictJsonResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'not_json' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    return { ok: false, problem: 'not_object' };
  const member = findDuplicateMember(text);
  if (member !== undefined) return { ok: false, problem: 'duplicate_member', member };
  return { ok: true, value: value as Record<string, unknown> };
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COLON = 0x3a;

/**
 * Returns the first member name that occurs twice in one object of `text`, which must already
 * be valid JSON (JSON.parse accepted it), so a small scanner suffices: only strings and
 * brackets matter, and a string is a member name exactly when a colon follows it.
 */
export function findDuplicateMember(text: string): string | undefined {
  // One entry per open container: the names seen so far (objects) or null (arrays).
  const stack: (Set<string> | null)[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === BACKSLASH) {
          escaped = true;
          i++;
        } else if (d === QUOTE) break;
      }
      const names = stack[stack.length - 1];
      if (!names) continue;
      let j = i + 1;
      while (j < n && isJsonWhitespace(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) !== COLON) continue;
      const raw = text.slice(start, i + 1);
      // "kid" and "\u006bid" are the same name: compare decoded names.
      const name = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      if (names.has(name)) return name;
      names.add(name);
    } else if (c === OPEN_OBJECT) stack.push(new Set());
    else if (c === OPEN_ARRAY) stack.push(null);
    else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) stack.pop();
  }
  return undefined;
}

function isJsonWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}
