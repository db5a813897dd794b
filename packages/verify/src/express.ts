import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createBearerAuthenticator, type BearerAuthOptions, type KeywardenAuth } from './bearer.js';

export type { BearerAuthOptions, ClaimRequirement, KeywardenAuth } from './bearer.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by @keywarden/verify's keywardenAuth once the bearer token passed complete validation. */
      auth?: KeywardenAuth;
    }
  }
}

/** An Express middleware that also owns a verifier (`close()` ends its key-events stream). */
export type KeywardenAuthMiddleware = RequestHandler & { close(): void };

/**
 * Express middleware: the bearer token must pass complete validation (and carry the required
 * scopes and claims); `req.auth` then holds the claims and `next()` runs. Failures answer RFC
 * 6750 challenges (see createBearerAuthenticator) with `{ error, reason, message }`, and never
 * reach the route. Works with Express 4 and 5.
 */
export function keywardenAuth(options: BearerAuthOptions): KeywardenAuthMiddleware {
  const auth = createBearerAuthenticator(options);
  const middleware = (req: Request, res: Response, next: NextFunction): void => {
    auth.authenticate(req.headers.authorization).then(
      (outcome) => {
        if (outcome.ok) {
          req.auth = outcome.auth;
          next();
          return;
        }
        const { status, headers, body } = outcome.challenge;
        res.status(status).set(headers).json(body);
      },
      (e: unknown) => next(e),
    );
  };
  return Object.assign(middleware, { close: auth.close });
}
