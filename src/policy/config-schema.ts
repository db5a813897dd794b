import { z } from 'zod';
import { SIGNING_ALGS } from './algorithms';

/**
 * The shape of the YAML config file, before policy rules are checked. Objects are strict:
 * an unknown field is a typo until proven otherwise, and a typo in a security policy must
 * not silently fall back to a default.
 */
const duration = z.string({ error: 'must be a duration such as 90s, 15m, 12h, 30d' });

const slug = z
  .string()
  .regex(/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/, 'must be a lowercase slug (a-z, 0-9, -), 1-64 chars');

const pinSource = z.union(
  [z.strictObject({ env: z.string().min(1) }), z.strictObject({ file: z.string().min(1) })],
  { error: 'must be {env: VAR_NAME} or {file: path}; a PIN never goes in the YAML itself' },
);

const pkcs11Backend = z.strictObject({
  type: z.literal('pkcs11'),
  module: z.string().min(1),
  tokenLabel: z.string().min(1).max(32),
  pin: pinSource,
  moduleEnv: z.record(z.string(), z.string()).default({}),
  sessions: z.number().int().min(1).max(64).default(4),
});

const azureCredential = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('default') }),
  z.strictObject({
    type: z.literal('client-secret'),
    tenantId: z.string().min(1),
    clientId: z.string().min(1),
    secret: pinSource,
  }),
  z.strictObject({ type: z.literal('managed-identity'), clientId: z.string().min(1).optional() }),
]);

const azureBackend = z.strictObject({
  type: z.literal('azure'),
  vaultUrl: z.url({ protocol: /^https$/, error: 'must be an https:// URL' }),
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9-]{1,24}$/, 'must be 1-24 letters, digits or dashes')
    .default('keywarden'),
  keyProtection: z.enum(['hsm', 'software']).default('hsm'),
  credential: azureCredential.default({ type: 'default' }),
  purgeOnDestroy: z.boolean().default(false),
  caFile: z.string().min(1).optional(),
  disableChallengeResourceVerification: z.boolean().default(false),
});

const policy = z.strictObject({
  prepublish: duration,
  activeFor: duration,
  verifyGrace: duration,
  maxTokenTtl: duration,
  destroyAfter: duration,
  maxKeyLifetime: duration,
  jwksMaxAge: duration.default('5m'),
});

export const scopeSchema = z.strictObject({
  name: slug,
  issuer: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  audiences: z.array(z.string().min(1)).min(1, 'needs at least one audience'),
  alg: z.enum(SIGNING_ALGS, { error: `must be one of ${SIGNING_ALGS.join(', ')}` }),
  rsaBits: z.union([z.literal(2048), z.literal(3072)]).default(2048),
  backend: z.string().min(1),
  schedule: z.string().default('* * * * *'),
  production: z.boolean().default(true),
  policy,
});

export const configFileSchema = z.strictObject({
  dataDir: z.string().min(1).default('./data'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      bodyLimitBytes: z.number().int().min(1024).max(1048576).default(65536),
      keyRefreshSeconds: z.number().int().min(1).max(60).default(2),
      publicUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
      workerHeader: z.boolean().default(false),
    })
    .default({
      host: '127.0.0.1',
      port: 8080,
      bodyLimitBytes: 65536,
      keyRefreshSeconds: 2,
      workerHeader: false,
    }),
  store: z
    .strictObject({ url: z.string().min(1).default('sqlite:keywarden.db') })
    .default({ url: 'sqlite:keywarden.db' }),
  backends: z.record(slug, z.discriminatedUnion('type', [pkcs11Backend, azureBackend])),
  // Each scope is parsed on its own (scopeSchema) so one broken scope hides no other problem.
  scopes: z.array(z.unknown()).min(1, 'declare at least one scope'),
  audit: z
    .strictObject({
      evidencePeriod: duration.default('730d'),
      checkpointEveryRecords: z.number().int().min(1).default(100),
      checkpointEvery: duration.default('10m'),
      backend: z.string().min(1).nullable().default(null),
    })
    .default({ evidencePeriod: '730d', checkpointEveryRecords: 100, checkpointEvery: '10m', backend: null }),
});

export type ConfigFile = z.infer<typeof configFileSchema>;
export type ScopeFile = z.infer<typeof scopeSchema>;
