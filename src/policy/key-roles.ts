import type { KeyRecord, KeyTimes } from './key';
import { effectiveState, type KeyState } from './key-state';
import { pickSigningKey } from './next-actions';

/**
 * A key's state as operators see it within its scope (`keys list`, `scopes show`, metrics): the
 * effective state (I2), except that of the keys inside their active window only the one that signs
 * (the latest activateAt, DESIGN.md §2) shows as `active`. The others show as `superseded`: a newer
 * key has taken over signing; they still verify the tokens they signed, like a retired key. So a
 * scope never shows more than one `active` key, whatever overlaps rotations and revocations left.
 */
export type ShownKeyState = KeyState | 'superseded';

/** Every shown state, in timeline order (metrics export a series for each). */
export const SHOWN_KEY_STATES: readonly ShownKeyState[] = [
  'pending',
  'active',
  'superseded',
  'retired',
  'expired',
  'revoked',
];

/** The shown state of `key`, given its scope's signing key now (undefined: none signs). */
export function shownKeyState(
  key: KeyTimes & { id: string },
  now: Date,
  signing: { id: string } | undefined,
): ShownKeyState {
  const state = effectiveState(key, now);
  return state === 'active' && key.id !== signing?.id ? 'superseded' : state;
}

/**
 * Shown states of key rows (any scopes), by row id. Only rows `mayBeSigning` accepts compete for
 * signing (e.g. rows the integrity check trusts: a refused row never signs, so it cannot be the
 * one `active` key); `generating` rows are left out.
 */
export function shownKeyStates(
  keys: readonly KeyRecord[],
  now: Date,
  mayBeSigning: (k: KeyRecord) => boolean = () => true,
): Map<string, ShownKeyState> {
  const ready = keys.filter((k) => k.status === 'ready');
  const signingByScope = new Map<string, KeyRecord | undefined>();
  for (const scope of new Set(ready.map((k) => k.scope))) {
    signingByScope.set(
      scope,
      pickSigningKey(
        ready.filter((k) => k.scope === scope && mayBeSigning(k)),
        now,
      ),
    );
  }
  return new Map(ready.map((k) => [k.id, shownKeyState(k, now, signingByScope.get(k.scope))]));
}
