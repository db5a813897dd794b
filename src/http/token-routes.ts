import Ajv from 'ajv';
import type { FastifyError, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { DeniedRecorder, Keywarden, SignActivityAggregator, SignRequest } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { TOKEN_TYPE_RE } from '../policy/token-type';
import { requireGrant, type ClientAuthenticator } from './auth';
import type { TokenServiceMetrics } from './metrics';

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

/**
 * The sign answer as JSON text. Every member is JSON-safe as it is (a compact JWS is base64url
 * and dots, expiresAt is ISO 8601); kid goes through JSON.stringify anyway, as it comes from the
 * store. Writing it here skips a schema serializer that re-scans the token for escapes. The parts
 * that repeat from token to token (the kid's member; expiresAt, shared by every token of the same
 * second) are kept from the answer before, so a busy route formats no date per token.
 */
const answerParts = { kid: '', kidMember: '', expiresAtMs: Number.NaN, expiresAtMember: '' };

function signAnswer(token: string, kid: string, expiresAt: Date): string {
  const p = answerParts;
  if (p.kid !== kid) {
    p.kidMember = `,"kid":${JSON.stringify(kid)}`;
    p.kid = kid;
  }
  const ms = expiresAt.getTime();
  if (p.expiresAtMs !== ms) {
    p.expiresAtMember = `,"expiresAt":"${expiresAt.toISOString()}"}`;
    p.expiresAtMs = ms;
  }
  return `{"token":"${token}"${p.kidMember}${p.expiresAtMember}`;
}

/**
 * Validation is strict, unlike fastify's defaults (which strip unknown members and coerce
 * types): an unknown member or a "60" where 60 belongs is refused, not guessed at.
 */
export function strictValidator() {
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

/** What the token routes report to the audit log: sign activity and refused requests. */
export interface RequestAudit {
  activity: SignActivityAggregator;
  denied: DeniedRecorder;
}

/** The token service's collaborators, built by the composition root. */
export interface TokenService {
  kw: Keywarden;
  auth: ClientAuthenticator;
  metrics: TokenServiceMetrics;
  audit: RequestAudit;
}

const scopeOf = (req: FastifyRequest) => (req.params as Partial<ScopeParams> | undefined)?.scope;

/**
 * `POST /v1/scopes/:scope/sign` (docs/api.md): authenticated before the body is read, strict
 * JSON, `iss` forced to the scope's issuer, never cached (tokens are credentials). Each answer is
 * counted once: successes by the handler, failures (auth, validation, signing) by onError.
 */
export function signRoute(t: TokenService): RouteOptions {
  return {
    method: 'POST',
    url: '/v1/scopes/:scope/sign',
    // No params schema: requireGrant has already answered 404 unless the scope is configured.
    schema: { body: SIGN_BODY },
    onRequest: requireGrant(t.kw, t.auth, 'sign', t.audit.denied),
    onError: async (req: FastifyRequest, reply: FastifyReply, err: FastifyError) => {
      t.metrics.signed(scopeOf(req), errorResult(err), reply.elapsedTime / 1000);
    },
    handler: async (req, reply) => {
      const { scope } = req.params as ScopeParams;
      const body = req.body as SignBody;
      // Only the members sent: no spread of conditional objects per request.
      const request: SignRequest = { claims: body.claims };
      if (body.ttlSeconds !== undefined) request.ttlSeconds = body.ttlSeconds;
      if (body.header?.typ !== undefined) request.typ = body.header.typ;
      const signed = await t.kw.sign(scope, request);
      const client = req.apiClient;
      if (client) t.audit.activity.note({ scope, kid: signed.kid, client: client.name, jti: signed.jti });
      reply.header('cache-control', 'no-store').type('application/json; charset=utf-8');
      t.metrics.signed(scope, 'ok', reply.elapsedTime / 1000);
      return signAnswer(signed.token, signed.kid, signed.expiresAt);
    },
  };
}

/** `POST /v1/scopes/:scope/verify`: complete validation (I6), claims or a reason. */
export function verifyRoute(t: TokenService): RouteOptions {
  return {
    method: 'POST',
    url: '/v1/scopes/:scope/verify',
    schema: { body: VERIFY_BODY },
    onRequest: requireGrant(t.kw, t.auth, 'verify', t.audit.denied),
    onError: async (req: FastifyRequest, _reply: FastifyReply, err: FastifyError) => {
      t.metrics.verified(scopeOf(req), errorResult(err));
    },
    handler: async (req, reply) => {
      const { scope } = req.params as ScopeParams;
      const body = req.body as VerifyBody;
      const r = await t.kw.verify(scope, body.token, body.audience, body.typ);
      reply.header('cache-control', 'no-store');
      if (r.valid) {
        t.metrics.verified(scope, 'valid');
        return { valid: true, kid: r.kid, claims: r.claims };
      }
      t.metrics.verified(scope, 'invalid', r.reason);
      return { valid: false, reason: r.reason, message: r.message };
    },
  };
}
