import * as path from 'node:path';
import { CronTime, validateCronExpression } from 'cron';
import { configFileSchema, scopeSchema, type ConfigFile, type ScopeFile } from './config-schema';
import { formatDuration, parseDurationSeconds } from './duration';
import type { BackendTypeRules } from './backend-type';
import { ConfigInvalidError, type ConfigProblem } from './errors';
import { expandScopeTemplates, type ScopeClaims } from './scope-templates';
import {
  ABSOLUTE_MAX_KEY_LIFETIME_SECONDS,
  type AuditConfig,
  type BackendConfig,
  type KeyPolicy,
  type KeywardenConfig,
  type ScopeConfig,
  type ServerConfig,
} from './scope';

export interface ValidateConfigContext {
  /** Where the document came from, for messages. */
  source: string;
  /** Relative paths in the document resolve against this directory. */
  baseDir: string;
  /** The backend types a config may use (src/backends/registry.ts gives every registered one). */
  backendTypes: readonly BackendTypeRules[];
  /**
   * Reads a scope template's `tenantsFile` (an absolute path); throws if it cannot. Supplied by
   * src/config (policy does no I/O); without it a template naming a file is refused.
   */
  readTenantsFile?(absolutePath: string): string;
}

/**
 * Validates a parsed config document in full and returns it frozen. Every problem is
 * collected and thrown together (ConfigInvalidError), each naming the scope, field, value
 * and rule, so an operator fixes a file in one pass rather than one error at a time.
 */
export function validateConfig(raw: unknown, ctx: ValidateConfigContext): KeywardenConfig {
  const problems: ConfigProblem[] = [];
  const issuesToProblems = (
    issues: readonly { path: readonly PropertyKey[]; message: string }[],
    prefix: PropertyKey[],
  ) =>
    issues.forEach((issue) => {
      const at = [...prefix, ...issue.path];
      problems.push({ path: formatPath(at), ...scopeOf(raw, at), message: issue.message });
    });
  const parsed = configFileSchema.safeParse(raw ?? {});
  const rawScopes = Array.isArray((raw as { scopes?: unknown } | null)?.scopes)
    ? (raw as { scopes: unknown[] }).scopes
    : [];
  const parsedScopes: (ScopeFile | undefined)[] = rawScopes.map((s, i) => {
    const r = scopeSchema.safeParse(s);
    if (!r.success) issuesToProblems(r.error.issues, ['scopes', i]);
    return r.success ? r.data : undefined;
  });
  if (!parsed.success) {
    issuesToProblems(parsed.error.issues, []);
    throw new ConfigInvalidError(ctx.source, problems);
  }
  const file = parsed.data;
  const resolve = (p: string) => path.resolve(ctx.baseDir, p);

  const rulesByType = new Map(ctx.backendTypes.map((t) => [t.type, t]));
  const backends: Record<string, BackendConfig> = {};
  // Reported after the scopes' problems, as the file reads: backends are declared once, used often.
  const backendProblems: ConfigProblem[] = [];
  for (const [name, entry] of Object.entries(file.backends)) {
    const rules = rulesByType.get(entry.type);
    if (!rules) {
      problems.push({
        path: `backends.${name}.type`,
        message: `unknown backend type "${entry.type}" (known: ${[...rulesByType.keys()].join(', ')})`,
      });
      continue;
    }
    const r = rules.schema.safeParse(entry);
    if (!r.success) {
      issuesToProblems(r.error.issues, ['backends', name]);
      continue;
    }
    const problem = (field: string, message: string) =>
      backendProblems.push({ path: `backends.${name}.${field}`, message });
    backends[name] = rules.toConfig(name, r.data, resolve, problem, resolve(file.dataDir));
  }

  // Explicit scopes first, then templates' tenants: a tenant whose name or issuer an explicit
  // scope already has is the one reported.
  const scopes: ScopeConfig[] = [];
  const claims: ScopeClaims = { names: new Map(), issuers: new Map() };
  const checkSettings = (s: ScopeFile, at: (field: string, message: string) => void) => {
    const backend = backends[s.backend];
    if (!backend) {
      if (!(s.backend in file.backends)) {
        at(
          'backend',
          `unknown backend "${s.backend}" (configured: ${Object.keys(file.backends).join(', ') || 'none'})`,
        );
      }
    } else {
      for (const p of rulesByType.get(backend.type)?.checkScope?.(s, backend) ?? []) at(p.field, p.message);
    }
    const cron = validateCronExpression(s.schedule);
    if (!cron.valid) {
      at('schedule', `invalid cron expression "${s.schedule}": ${cron.error?.message ?? 'unparseable'}`);
    } else if (!cronEverFires(s.schedule)) {
      at('schedule', `cron expression "${s.schedule}" never fires (e.g. a day that no month has)`);
    }
    return validatePolicy(s.policy, (field, message) => at(`policy.${field}`, message));
  };
  parsedScopes.forEach((s, i) => {
    // Uniqueness is checked on the raw strings too, so a scope with another problem still
    // counts as taking its name and issuer.
    const rawScope = (rawScopes[i] ?? {}) as { name?: unknown; issuer?: unknown };
    const name = s?.name ?? (typeof rawScope.name === 'string' ? rawScope.name : `#${i}`);
    const issuer = s?.issuer ?? (typeof rawScope.issuer === 'string' ? rawScope.issuer : undefined);
    const at = (field: string, message: string) =>
      problems.push({ path: `scopes[${i}].${field}`, scope: name, message });
    if (claims.names.has(name)) at('name', `duplicate scope name "${name}"`);
    else claims.names.set(name, `scopes[${i}]`);
    if (issuer !== undefined) {
      const other = claims.issuers.get(issuer);
      if (other !== undefined)
        at('issuer', `issuer ${issuer} is already used by scope ${other}; issuers must be unique`);
      else claims.issuers.set(issuer, name);
    }
    if (!s) return;
    const policy = checkSettings(s, at);
    if (policy) scopes.push({ ...s, policy });
  });
  scopes.push(
    ...expandScopeTemplates(file.scopeTemplates, {
      resolve,
      ...(ctx.readTenantsFile ? { readTenantsFile: ctx.readTenantsFile } : {}),
      checkSettings,
      issuesToProblems,
      claims,
      problems,
    }),
  );
  if (file.scopes.length === 0 && file.scopeTemplates.length === 0) {
    problems.push({ path: 'scopes', message: 'declare at least one scope (or a scope template)' });
  }

  problems.push(...backendProblems);
  const server = validateServer(
    file.server,
    { scopes: rawScopes, scopeTemplates: file.scopeTemplates },
    resolve,
    problems,
  );

  const audit = validateAudit(file.audit, backends, problems);
  if (problems.length > 0) throw new ConfigInvalidError(ctx.source, problems);

  return deepFreeze({
    source: ctx.source,
    baseDir: ctx.baseDir,
    dataDir: resolve(file.dataDir),
    logLevel: file.logLevel,
    server,
    admin: {
      socket: file.admin.socket
        ? {
            path: path.resolve(resolve(file.dataDir), file.admin.socket.path),
            group: file.admin.socket.group,
          }
        : null,
    },
    store: { url: resolveStoreUrl(file.store.url, resolve(file.dataDir)) },
    backends,
    scopes,
    scheduler: file.scheduler,
    audit,
  });
}

/**
 * The server section, TLS paths resolved. With TLS on, what the daemon advertises is https too:
 * `server.publicUrl` and every scope's issuer (relying parties such as mod_auth_openidc refuse an
 * http issuer, and keywarden's verify library refuses one off loopback).
 */
function validateServer(
  server: ConfigFile['server'],
  raw: { scopes: readonly unknown[]; scopeTemplates: readonly unknown[] },
  resolve: (p: string) => string,
  problems: ConfigProblem[],
): ServerConfig {
  const { tls, ...rest } = server;
  if (!tls) return rest;
  if (rest.publicUrl !== undefined && urlScheme(rest.publicUrl) !== 'https:') {
    problems.push({
      path: 'server.publicUrl',
      message: `server.tls is set, so the public URL is https: got ${rest.publicUrl}`,
    });
  }
  for (const list of ['scopes', 'scopeTemplates'] as const) {
    raw[list].forEach((s, i) => {
      const { name, issuer } = (s ?? {}) as { name?: unknown; issuer?: unknown };
      if (typeof issuer === 'string' && urlScheme(issuer) === 'http:') {
        problems.push({
          path: `${list}[${i}].issuer`,
          ...(typeof name === 'string' ? (list === 'scopes' ? { scope: name } : {}) : {}),
          message: `server.tls is set, so issuers are https: got ${issuer}${list === 'scopeTemplates' && typeof name === 'string' ? ` (template "${name}")` : ''}`,
        });
      }
    });
  }
  return {
    ...rest,
    tls: {
      certFile: resolve(tls.certFile),
      keyFile: resolve(tls.keyFile),
      ...(tls.clientCaFile !== undefined ? { clientCaFile: resolve(tls.clientCaFile) } : {}),
      ...(tls.operatorCaFile !== undefined ? { operatorCaFile: resolve(tls.operatorCaFile) } : {}),
      minVersion: tls.minVersion,
    },
  };
}

/**
 * The scheme of `url` as a URL parser reads it (lower case, `http:`): schemes are case-insensitive
 * (RFC 3986), so `HTTP://` is http, and the parser drops leading blanks, as the schema's check does.
 * A template's issuer pattern may not parse; its text then decides.
 */
function urlScheme(url: string): string {
  try {
    return new URL(url).protocol;
  } catch {
    return `${url.trim().toLowerCase().split(':')[0]}:`;
  }
}

/** Checks one scope's key policy against the rules of DESIGN.md §2; returns it in seconds. */
export function validatePolicy(
  p: ScopeFile['policy'],
  report: (field: string, message: string) => void,
): KeyPolicy | undefined {
  const seconds: Partial<Record<keyof typeof p, number>> = {};
  for (const field of Object.keys(p) as (keyof typeof p)[]) {
    const s = parseDurationSeconds(p[field]);
    if (s === undefined) report(field, `"${p[field]}" is not a duration (use e.g. 90s, 15m, 12h, 30d)`);
    else seconds[field] = s;
  }
  const { prepublish, activeFor, verifyGrace, maxTokenTtl, destroyAfter, maxKeyLifetime, jwksMaxAge } =
    seconds;
  if (
    prepublish === undefined ||
    activeFor === undefined ||
    verifyGrace === undefined ||
    maxTokenTtl === undefined ||
    destroyAfter === undefined ||
    maxKeyLifetime === undefined ||
    jwksMaxAge === undefined
  ) {
    return undefined;
  }
  const d = formatDuration;
  let ok = true;
  const rule = (cond: boolean, field: string, message: string) => {
    if (!cond) {
      ok = false;
      report(field, message);
    }
  };
  rule(activeFor > 0, 'activeFor', 'must be longer than 0s');
  rule(maxTokenTtl > 0, 'maxTokenTtl', 'must be longer than 0s');
  rule(jwksMaxAge > 0, 'jwksMaxAge', 'must be longer than 0s');
  rule(
    prepublish >= 2 * jwksMaxAge,
    'prepublish',
    `prepublish ${d(prepublish)} must be >= 2 x jwksMaxAge (${d(2 * jwksMaxAge)}) so every cached JWKS knows a key before it signs`,
  );
  rule(
    verifyGrace >= maxTokenTtl,
    'verifyGrace',
    `verifyGrace ${d(verifyGrace)} must be >= maxTokenTtl ${d(maxTokenTtl)} so tokens outlive no key`,
  );
  rule(
    maxKeyLifetime <= ABSOLUTE_MAX_KEY_LIFETIME_SECONDS,
    'maxKeyLifetime',
    `maxKeyLifetime ${d(maxKeyLifetime)} exceeds the absolute ceiling of 400d`,
  );
  const lifetime = prepublish + activeFor + verifyGrace;
  rule(
    lifetime <= maxKeyLifetime,
    'maxKeyLifetime',
    `prepublish + activeFor + verifyGrace = ${d(lifetime)} exceeds maxKeyLifetime ${d(maxKeyLifetime)}`,
  );
  if (!ok) return undefined;
  return {
    prepublishSeconds: prepublish,
    activeForSeconds: activeFor,
    verifyGraceSeconds: verifyGrace,
    maxTokenTtlSeconds: maxTokenTtl,
    destroyAfterSeconds: destroyAfter,
    maxKeyLifetimeSeconds: maxKeyLifetime,
    jwksMaxAgeSeconds: jwksMaxAge,
  };
}

function validateAudit(
  a: ConfigFile['audit'],
  backends: Record<string, BackendConfig>,
  problems: ConfigProblem[],
): AuditConfig {
  const evidence = parseDurationSeconds(a.evidencePeriod);
  const every = parseDurationSeconds(a.checkpointEvery);
  if (evidence === undefined)
    problems.push({ path: 'audit.evidencePeriod', message: `"${a.evidencePeriod}" is not a duration` });
  if (every === undefined)
    problems.push({ path: 'audit.checkpointEvery', message: `"${a.checkpointEvery}" is not a duration` });
  if (a.backend !== null && !backends[a.backend]) {
    problems.push({ path: 'audit.backend', message: `unknown backend "${a.backend}"` });
  }
  return {
    evidencePeriodSeconds: evidence ?? 0,
    checkpointEveryRecords: a.checkpointEveryRecords,
    checkpointEverySeconds: every ?? 0,
    backend: a.backend,
  };
}

/** `sqlite:<relative>` resolves against the data dir; postgres URLs pass through. */
function resolveStoreUrl(url: string, dataDir: string): string {
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    return file === ':memory:' ? url : `sqlite:${path.resolve(dataDir, file)}`;
  }
  return url;
}

function formatPath(p: readonly PropertyKey[]): string {
  return (
    p.reduce<string>(
      (acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)),
      '',
    ) || '(root)'
  );
}

function scopeOf(raw: unknown, p: readonly PropertyKey[]): { scope?: string } {
  if (p[0] !== 'scopes' || typeof p[1] !== 'number') return {};
  const scopes = (raw as { scopes?: unknown[] } | null)?.scopes;
  const name = (scopes?.[p[1]] as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? { scope: name } : {};
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/**
 * A syntactically valid cron expression can still name no instant (`0 0 31 2 *`). cron's API
 * only answers this relative to the current time; the answer for such dates does not depend
 * on it, so this is the one place policy code lets a library look at the clock.
 */
function cronEverFires(expression: string): boolean {
  try {
    new CronTime(expression, 'UTC').sendAt();
    return true;
  } catch {
    return false;
  }
}
