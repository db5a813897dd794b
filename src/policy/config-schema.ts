import { z } from 'zod';
import { SIGNING_ALGS } from './algorithms';

/**
 * The shape of the YAML config file, before policy rules are checked. Objects are strict:
 * an unknown field is a typo until proven otherwise, and a typo in a security policy must
 * not silently fall back to a default.
 */
const duration = z.string({ error: 'must be a duration such as 90s, 15m, 12h, 30d' });

/** A scope name (and a tenant id, a backend or template name): what fits a URL path and a label. */
export const SLUG_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
export const SLUG_RULE = 'must be a lowercase slug (a-z, 0-9, -), 1-64 chars';
const slug = z.string().regex(SLUG_PATTERN, SLUG_RULE);

/** Where a secret (HSM PIN, client secret) comes from; shared by the backend types' schemas. */
export const pinSourceSchema = z.union(
  [z.strictObject({ env: z.string().min(1) }), z.strictObject({ file: z.string().min(1) })],
  { error: 'must be {env: VAR_NAME} or {file: path}; a PIN never goes in the YAML itself' },
);

/**
 * A backend entry before its type's own schema (src/policy/backend-type.ts) checks the rest:
 * validateConfig parses each entry with the schema of the type registered under `type`.
 */
const backendEntry = z.looseObject({ type: z.string({ error: 'must name a backend type' }) });

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

/** The key-set change streams (`GET /scopes/:scope/key-events`, docs/api.md). */
const KEY_EVENTS_DEFAULTS = { heartbeatSeconds: 15, maxConnectionsPerAddress: 32, maxConnections: 10000 };
const keyEventsSchema = z
  .strictObject({
    // Relying parties treat 3 missed heartbeats as a dead stream (the library: 45 s by default).
    heartbeatSeconds: z.number().int().min(1).max(300).default(KEY_EVENTS_DEFAULTS.heartbeatSeconds),
    maxConnectionsPerAddress: z
      .number()
      .int()
      .min(1)
      .max(100000)
      .default(KEY_EVENTS_DEFAULTS.maxConnectionsPerAddress),
    maxConnections: z.number().int().min(1).max(1000000).default(KEY_EVENTS_DEFAULTS.maxConnections),
  })
  .default(KEY_EVENTS_DEFAULTS);

/**
 * `server.tls`: HTTPS on the listener (docs/configuration.md). Paths only: the files are read and
 * checked (parse, key matches certificate, validity) by src/config/tls-options.ts, at `config
 * check` and at start, never by the pure validation here.
 */
const tlsSchema = z.strictObject({
  certFile: z.string().min(1, 'must name a PEM file (the certificate, then its chain)'),
  keyFile: z.string().min(1, "must name a PEM file (the certificate's private key)"),
  clientCaFile: z.string().min(1).optional(),
  operatorCaFile: z.string().min(1).optional(),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3'], { error: 'must be TLSv1.2 or TLSv1.3' }).default('TLSv1.2'),
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
      keyEvents: keyEventsSchema,
      tls: tlsSchema.optional(),
    })
    .default({
      host: '127.0.0.1',
      port: 8080,
      bodyLimitBytes: 65536,
      keyRefreshSeconds: 2,
      workerHeader: false,
      keyEvents: KEY_EVENTS_DEFAULTS,
    }),
  admin: z
    .strictObject({
      // The local admin API (docs/operations.md "The admin socket"); null turns it off.
      socket: z
        .strictObject({
          path: z.string().min(1).default('admin.sock'),
          group: z
            .string()
            .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$|^[0-9]+$/, 'must be a group name or a numeric gid')
            .nullable()
            .default('keywarden-admin'),
        })
        .nullable()
        .default({ path: 'admin.sock', group: 'keywarden-admin' }),
    })
    .default({ socket: { path: 'admin.sock', group: 'keywarden-admin' } }),
  store: z
    .strictObject({ url: z.string().min(1).default('sqlite:keywarden.db') })
    .default({ url: 'sqlite:keywarden.db' }),
  backends: z.record(slug, backendEntry),
  scheduler: z
    .strictObject({
      // Scope reconciles one daemon runs at once (src/scheduler/reconcile-queue.ts).
      concurrency: z.number().int().min(1).max(1024).default(8),
    })
    .default({ concurrency: 8 }),
  // Each scope is parsed on its own (scopeSchema) so one broken scope hides no other problem;
  // at least one scope or scope template is required (checked in validateConfig).
  scopes: z.array(z.unknown()).default([]),
  // Each template is parsed on its own too (src/policy/scope-templates.ts).
  scopeTemplates: z.array(z.unknown()).default([]),
  audit: z
    .strictObject({
      evidencePeriod: duration.default('730d'),
      checkpointEveryRecords: z.number().int().min(1).default(100),
      checkpointEvery: duration.default('10m'),
      backend: z.string().min(1).nullable().default(null),
    })
    .default({ evidencePeriod: '730d', checkpointEveryRecords: 100, checkpointEvery: '10m', backend: null }),
});

/**
 * A scope template (docs/configuration.md "Scope templates"): the fields of a scope, with the
 * name given as `namePattern` and `{tenant}` standing for each tenant in `namePattern`, `issuer`
 * and `audiences`; the tenants listed inline or in a file. Checked as a template first (its own
 * `name` only names it in messages; it is no scope), then per tenant.
 */
export const scopeTemplateSchema = scopeSchema.omit({ name: true, issuer: true, audiences: true }).extend({
  name: slug,
  namePattern: z.string().min(1),
  issuer: z.string().min(1),
  audiences: z.array(z.string().min(1)).min(1, 'needs at least one audience'),
  tenants: z.array(z.string()).optional(),
  tenantsFile: z.string().min(1).optional(),
});

export type ConfigFile = z.infer<typeof configFileSchema>;
export type ScopeFile = z.infer<typeof scopeSchema>;
export type ScopeTemplateFile = z.infer<typeof scopeTemplateSchema>;
