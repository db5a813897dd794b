import Ajv from 'ajv';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { LifecycleContext } from '../lifecycle/context';
import { signToken } from '../lifecycle/sign-token';
import { verifyToken } from '../lifecycle/verify-token';
import { KeywardenError } from '../policy/errors';
import { ClientAuthenticator, requireGrant } from './auth';
import { metricsRoutes, TokenServiceMetrics } from './metrics';

/** Longest ttlSeconds the schema accepts; the scope's maxTokenTtl caps it far lower anyway. */
const MAX_TTL_SECONDS = 400 * 86400;

const PARAMS = {
  type: 'object',
  properties: { scope: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } },
  required: ['scope'],
  additionalProperties: false,
} as const;

const SIGN_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['claims'],
  properties: {
    claims: { type: 'object' },
    ttlSeconds: { type: 'integer', minimum: 1, maximum: MAX_TTL_SECONDS },
    header: {
      type: 'object',
      additionalProperties: false,
      properties: { typ: { type: 'string', minLength: 1, maxLength: 64 } },
    },
  },
} as const;

const SIGN_RESPONSE = {
  type: 'object',
  required: ['token', 'kid', 'expiresAt'],
  properties: { token: { type: 'string' }, kid: { type: 'string' }, expiresAt: { type: 'string' } },
} as const;

const VERIFY_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['token', 'audience'],
  properties: {
    // No length limit here: an oversized token is a verification answer (token_too_large),
    // and the server's body limit bounds what is read at all.
    token: { type: 'string' },
    audience: { type: 'string', minLength: 1, maxLength: 1024 },
  },
} as const;

interface SignBody {
  claims: Record<string, unknown>;
  ttlSeconds?: number;
  header?: { typ?: string };
}

interface VerifyBody {
  token: string;
  audience: string;
}

type ScopeParams = { scope: string };

/**
 * Validation is strict, unlike fastify's defaults (which strip unknown members and coerce
 * types): an unknown member or a "60" where 60 belongs is refused, not guessed at.
 */
function strictValidator() {
  const ajv = new Ajv({
    allErrors: false,
    coerceTypes: false,
    removeAdditional: false,
    useDefaults: false,
    strict: true,
  });
  return ({ schema }: { schema: object }) => ajv.compile(schema);
}

/** The result label of a failed request: its error code, lowercased. */
function errorResult(err: FastifyError | KeywardenError | Error): string {
  if (err instanceof KeywardenError) return err.code.toLowerCase();
  const status = (err as FastifyError).statusCode;
  return typeof status === 'number' && status >= 400 && status < 500 ? 'request_invalid' : 'internal';
}

/**
 * `POST /v1/scopes/:scope/sign` and `POST /v1/scopes/:scope/verify` for API clients
 * (docs/api.md). Both authenticate before the body is read, accept `application/json` only,
 * validate the body strictly, and never cache: tokens are credentials (`Cache-Control: no-store`).
 */
export function registerSignVerifyRoutes(
  app: FastifyInstance,
  ctx: LifecycleContext,
  auth: ClientAuthenticator,
  metrics: TokenServiceMetrics,
): void {
  app.register(async (api) => {
    // fastify also parses text/plain by default; these routes take JSON and nothing else (415).
    api.removeContentTypeParser('text/plain');
    api.setValidatorCompiler(strictValidator());
    api.addHook('onReady', () => auth.start());
    api.addHook('onClose', async () => auth.stop());

    const failures = new WeakMap<FastifyRequest, string>();
    const onError = async (req: FastifyRequest, _reply: FastifyReply, err: Error) => {
      failures.set(req, errorResult(err));
    };
    const scopeOf = (req: FastifyRequest) => (req.params as Partial<ScopeParams> | undefined)?.scope;

    api.post<{ Params: ScopeParams; Body: SignBody }>(
      '/v1/scopes/:scope/sign',
      {
        schema: { params: PARAMS, body: SIGN_BODY, response: { 200: SIGN_RESPONSE } },
        onRequest: requireGrant(ctx, auth, 'sign'),
        onError,
        onResponse: async (req, reply) => {
          metrics.signed(scopeOf(req), failures.get(req) ?? 'ok', reply.elapsedTime / 1000);
        },
      },
      async (req, reply) => {
        const { claims, ttlSeconds, header } = req.body;
        const signed = await signToken(ctx, req.params.scope, {
          claims,
          ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
          ...(header?.typ !== undefined ? { typ: header.typ } : {}),
        });
        reply.header('cache-control', 'no-store');
        return { token: signed.token, kid: signed.kid, expiresAt: signed.expiresAt.toISOString() };
      },
    );

    api.post<{ Params: ScopeParams; Body: VerifyBody }>(
      '/v1/scopes/:scope/verify',
      {
        schema: { params: PARAMS, body: VERIFY_BODY },
        onRequest: requireGrant(ctx, auth, 'verify'),
        onError,
        onResponse: async (req) => {
          const failed = failures.get(req);
          if (failed !== undefined) metrics.verified(scopeOf(req), failed);
        },
      },
      async (req, reply) => {
        const r = await verifyToken(ctx, req.params.scope, req.body.token, req.body.audience);
        reply.header('cache-control', 'no-store');
        if (r.valid) {
          metrics.verified(req.params.scope, 'valid');
          return { valid: true, kid: r.kid, claims: r.claims };
        }
        metrics.verified(req.params.scope, 'invalid', r.reason);
        return { valid: false, reason: r.reason, message: r.message };
      },
    );
  });
}

/**
 * The token service's route plugins for createServer's `plugins`: metrics (`/metrics`) and the
 * authenticated sign/verify routes, sharing one metrics registry and one client authenticator.
 */
export function tokenServicePlugins(ctx: LifecycleContext): ((app: FastifyInstance) => void)[] {
  const metrics = new TokenServiceMetrics(ctx.config);
  const auth = new ClientAuthenticator(ctx, { pollSeconds: ctx.config.server.keyRefreshSeconds });
  return [metricsRoutes(metrics), (app) => registerSignVerifyRoutes(app, ctx, auth, metrics)];
}
