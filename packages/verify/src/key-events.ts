import { parseJsonObject } from './strict-json.js';

/**
 * The key-set change stream of a keywarden scope (`GET /scopes/{scope}/key-events`, Server-Sent
 * Events): the daemon and the library share this one definition of an event.
 */

/** The SSE event name of a key-set change. */
export const KEY_EVENT_NAME = 'keys';

/**
 * The scope's published key set as it is now. The SSE event id is `etag`, the scope JWKS's
 * ETag, so a reconnect with `Last-Event-ID` tells the daemon which key set the relying party
 * last heard of: the same set means nothing was missed, another set is sent at once.
 */
export interface KeyEvent {
  scope: string;
  /** The ETag of the scope's JWKS with exactly these keys. */
  etag: string;
  /** The kids in the scope's JWKS now. A kid that left it is revoked or expired: trust it no more. */
  kids: string[];
}

const MAX_KIDS = 1000;

/** Reads an event's data, or undefined when it is not a well-formed key event. */
export function parseKeyEvent(data: string): KeyEvent | undefined {
  const parsed = parseJsonObject(data);
  if (!parsed.ok) return undefined;
  const { scope, etag, kids } = parsed.value;
  if (typeof scope !== 'string' || typeof etag !== 'string' || etag.length === 0) return undefined;
  if (!Array.isArray(kids) || kids.length > MAX_KIDS) return undefined;
  if (!kids.every((k): k is string => typeof k === 'string' && k.length > 0)) return undefined;
  return { scope, etag, kids };
}

/** The SSE frame of an event: `id` (the ETag), `event`, one `data` line of JSON. */
export function formatKeyEvent(event: KeyEvent): string {
  // An SSE field ends at a line break: JSON.stringify never emits a raw one, and an ETag is
  // a quoted token without one (checked, not assumed, since `id` is written raw).
  if (/[\r\n\0]/.test(event.etag)) throw new TypeError('an event id cannot contain a line break or NUL');
  return `id: ${event.etag}\nevent: ${KEY_EVENT_NAME}\ndata: ${JSON.stringify(event)}\n\n`;
}
