import Ajv from 'ajv';
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { DeniedRecorder, SignActivityAggregator } from '../lifecycle/audit-activity';
import type { LifecycleContext } from '../lifecycle/context';
import { signToken } from '../lifecycle/sign-token';
import { verifyToken } from '../lifecycle/verify-token';
import { KeywardenError } from '../policy/errors';
import { TOKEN_TYPE_RE } from '../verify/token-type';
import { ClientAuthenticator, requestClient, requireGrant } from './auth';
import { metricsRoutes, TokenServiceMetrics } from './metrics';

/** Longest ttlSeconds the schema accepts; the scope's maxTokenTtl caps it far lower anyway. */
const MAX_TTL_SECONDS = 400 * 86400;

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

const VERIFY_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['token', 'audience'],
  properties: {
    // No length limit here: an oversized token is a verification answer (token_too_large),
    // and the server's body limit bounds what is read at all.
    token: { type: 'string' },
    audience: { type: 'string', minLength: 1, maxLength: 1024 },
    // The token type the caller accepts (explicit typing); the grammar the sign route signs.
    typ: { type: 'string', pattern: TOKEN_TYPE_RE.source },
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
  typ?: string;
}

type ScopeParams = { scope: string };

/** What the token routes report to the audit log: sign activity and refused requests. */
export interface RequestAudit {
  activity: SignActivityAggregator;
  denied: DeniedRecorder;
}

/**
 * The sign answer as JSON text. Every member is JSON-safe as it is (a compact JWS is base64url
 * and dots, expiresAt is ISO 8601); kid goes through JSON.stringify anyway, as it comes from the
 * store. Writing it here skips a schema serializer that re-scans the token for escapes.
 */
function signAnswer(token: string, kid: string, expiresAt: Date): string {
  return `{"token":"${token}","kid":${JSON.stringify(kid)},"expiresAt":"${expiresAt.toISOString()}"}`;
}

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
  audit: RequestAudit,
): void {
  app.register(async (api) => {
    // fastify also parses text/plain by default; these routes take JSON and nothing else (415).
    api.removeContentTypeParser('text/plain');
    api.setValidatorCompiler(strictValidator());
    api.addHook('onReady', () => {
      audit.activity.start();
      audit.denied.start();
      return auth.start();
    });
    // fastify runs onClose after in-flight requests finished: the last minute's counts are written.
    api.addHook('onClose', async () => {
      auth.stop();
      await Promise.all([audit.activity.stop(), audit.denied.stop()]);
    });

    // Each answer is counted once: successes by the handler, failures (from any stage: auth,
    // validation, signing) by onError. No onResponse hook: it costs a listener pair per request.
    const scopeOf = (req: FastifyRequest) => (req.params as Partial<ScopeParams> | undefined)?.scope;

    api.post<{ Params: ScopeParams; Body: SignBody }>(
      '/v1/scopes/:scope/sign',
      {
        // No params schema: requireGrant has already answered 404 unless the scope is configured.
        schema: { body: SIGN_BODY },
        onRequest: requireGrant(ctx, auth, 'sign', audit.denied),
        onError: async (req, reply, err) => {
          metrics.signed(scopeOf(req), errorResult(err), reply.elapsedTime / 1000);
        },
      },
      async (req, reply) => {
        const { claims, ttlSeconds, header } = req.body;
        const signed = await signToken(ctx, req.params.scope, {
          claims,
          ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
          ...(header?.typ !== undefined ? { typ: header.typ } : {}),
        });
        const client = requestClient.get(req);
        if (client)
          audit.activity.note({
            scope: req.params.scope,
            kid: signed.kid,
            client: client.name,
            jti: signed.jti,
          });
        reply.header('cache-control', 'no-store').type('application/json; charset=utf-8');
        metrics.signed(req.params.scope, 'ok', reply.elapsedTime / 1000);
        return signAnswer(signed.token, signed.kid, signed.expiresAt);
      },
    );

    api.post<{ Params: ScopeParams; Body: VerifyBody }>(
      '/v1/scopes/:scope/verify',
      {
        schema: { body: VERIFY_BODY },
        onRequest: requireGrant(ctx, auth, 'verify', audit.denied),
        onError: async (req, _reply, err) => {
          metrics.verified(scopeOf(req), errorResult(err));
        },
      },
      async (req, reply) => {
        const r = await verifyToken(ctx, req.params.scope, req.body.token, req.body.audience, req.body.typ);
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
 * The token service's route plugins for createServer's `plugins`: metrics (`/metrics`, also
 * serving `metricsRegistries`, e.g. the key lifecycle's) and the authenticated sign/verify
 * routes, sharing one metrics registry and one client authenticator.
 */
export function tokenServicePlugins(
  ctx: LifecycleContext,
  opts: { metricsRegistries?: readonly Registry[] } = {},
): ((app: FastifyInstance) => void)[] {
  const metrics = new TokenServiceMetrics(ctx.config);
  const auth = new ClientAuthenticator(ctx, { pollSeconds: ctx.config.server.keyRefreshSeconds });
  const audit = { activity: new SignActivityAggregator(ctx), denied: new DeniedRecorder(ctx) };
  return [
    metricsRoutes(metrics, opts.metricsRegistries),
    (app) => registerSignVerifyRoutes(app, ctx, auth, metrics, audit),
  ];
}
