/** Why a key set or key could not be published or read (thrown by toPublishedJwk and parseJwks). */
export type KeySetErrorCode = 'KEY_NOT_USABLE' | 'JWKS_INVALID';

/**
 * Thrown for a key that cannot be published as a JWK (`KEY_NOT_USABLE`) or a document that is
 * not a JWKS (`JWKS_INVALID`). Token validation never throws it: refusals are results.
 */
export class KeySetError extends Error {
  constructor(
    readonly code: KeySetErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'KeySetError';
  }
}
