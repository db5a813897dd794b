import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { createBearerAuthenticator, type BearerAuthOptions, type KeywardenAuth } from './bearer.js';

export type { BearerAuthOptions, ClaimRequirement, KeywardenAuth } from './bearer.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by @keywarden/verify's keywardenAuth once the bearer token passed complete validation. */
    auth: KeywardenAuth | null;
  }
}

/**
 * fastify plugin: every route of the instance it is registered on (and of its children) requires
 * a bearer token that passes complete validation; `request.auth` then holds the claims. Register
 * it inside an encapsulated context (`app.register(async (api) => { ... })`) to protect only that
 * context's routes. Failures answer RFC 6750 challenges (see createBearerAuthenticator) with
 * `{ error, reason, message }`. Closing the instance closes the verifier it made.
 */
export function keywardenAuth(
  instance: FastifyInstance,
  options: BearerAuthOptions,
  done: (err?: Error) => void,
): void {
  let hook: onRequestHookHandler;
  let close: () => void;
  try {
    ({ hook, close } = keywardenAuthHook(options));
  } catch (e) {
    done(e as Error);
    return;
  }
  if (!instance.hasRequestDecorator('auth')) instance.decorateRequest('auth', null);
  instance.addHook('onRequest', hook);
  instance.addHook('onClose', (_i, next) => {
    close();
    next();
  });
  done();
}
// Not encapsulated (what fastify-plugin does): the hook covers the context it is registered in.
(keywardenAuth as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(keywardenAuth as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] =
  '@keywarden/verify';

/**
 * The same check as an `onRequest` hook, for single routes: `{ onRequest: hook }`. The route's
 * instance must have the `auth` request decorator (`app.decorateRequest('auth', null)`), or the
 * hook adds the property per request. Call `close()` when done with it (ends a key-events stream).
 */
export function keywardenAuthHook(options: BearerAuthOptions): {
  hook: onRequestHookHandler;
  close: () => void;
} {
  const auth = createBearerAuthenticator(options);
  const hook = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const outcome = await auth.authenticate(request.headers.authorization);
    if (outcome.ok) {
      request.auth = outcome.auth;
      return;
    }
    const { status, headers, body } = outcome.challenge;
    await reply.code(status).headers(headers).send(body);
  };
  return { hook: hook as onRequestHookHandler, close: auth.close };
}
