import { SLUG_PATTERN, SLUG_RULE, scopeSchema, scopeTemplateSchema, type ScopeFile } from './config-schema';
import type { ConfigProblem } from './errors';
import type { KeyPolicy, ScopeConfig } from './scope';

/** What stands for the tenant id in a template's `namePattern`, `issuer` and `audiences`. */
export const TENANT_PLACEHOLDER = '{tenant}';

/**
 * Problems listed per template about its tenants; the rest are counted in one more line. A
 * tenants file of 100,000 lines with a systematic mistake is one fix, not 100,000 lines to read.
 */
export const MAX_TENANT_PROBLEMS = 20;

/** Scope names and issuers already taken (by explicit scopes, by earlier templates' tenants). */
export interface ScopeClaims {
  /** name -> who declares it, for messages (`scopes[3]`, `template "t", tenant "a"`). */
  names: Map<string, string>;
  /** issuer -> the scope that has it. */
  issuers: Map<string, string>;
}

export interface TemplateContext {
  /** Absolute path of a `tenantsFile` (relative ones resolve against the config's directory). */
  resolve(path: string): string;
  /**
   * Reads a tenants file's text (src/config supplies it: policy does no I/O). Absent: a template
   * with `tenantsFile` is refused. Throws with a message if the file cannot be read.
   */
  readTenantsFile?(absolutePath: string): string;
  /** A scope's backend, schedule and policy checks, as for an explicit scope; the policy in seconds. */
  checkSettings(s: ScopeFile, at: (field: string, message: string) => void): KeyPolicy | undefined;
  /** Zod issues to problems under a path prefix. */
  issuesToProblems(
    issues: readonly { path: readonly PropertyKey[]; message: string }[],
    prefix: PropertyKey[],
  ): void;
  claims: ScopeClaims;
  problems: ConfigProblem[];
}

/** One tenant as listed: its id and where (`tenants[4]`, `tenantsFile line 17`) for messages. */
interface TenantEntry {
  id: string;
  where: string;
}

/**
 * Expands `scopeTemplates` into ordinary scopes, validating each template as strictly as an
 * explicit scope: its settings once (backend, algorithm, schedule, policy: the same checks, at
 * the template's path), then per tenant the tenant id, the scope name, the issuer, and that
 * neither name nor issuer is taken by an explicit scope, another tenant or another template.
 * Problems go to `ctx.problems`; a template with any problem contributes no scope.
 */
export function expandScopeTemplates(rawTemplates: readonly unknown[], ctx: TemplateContext): ScopeConfig[] {
  const scopes: ScopeConfig[] = [];
  const templateNames = new Map<string, number>();
  rawTemplates.forEach((raw, i) => {
    const before = ctx.problems.length;
    const expanded = expandOne(raw, i, templateNames, ctx);
    if (expanded && ctx.problems.length === before) scopes.push(...expanded);
  });
  return scopes;
}

function expandOne(
  raw: unknown,
  i: number,
  templateNames: Map<string, number>,
  ctx: TemplateContext,
): ScopeConfig[] | undefined {
  const base = `scopeTemplates[${i}]`;
  const parsed = scopeTemplateSchema.safeParse(raw);
  if (!parsed.success) {
    ctx.issuesToProblems(parsed.error.issues, ['scopeTemplates', i]);
    return undefined;
  }
  const t = parsed.data;
  const label = `template "${t.name}"`;
  const at = (field: string, message: string) =>
    ctx.problems.push({ path: `${base}.${field}`, message: `${label}: ${message}` });

  const other = templateNames.get(t.name);
  if (other !== undefined) at('name', `duplicate template name (also scopeTemplates[${other}])`);
  else templateNames.set(t.name, i);

  let placeholdersOk = true;
  const needsTenant = (field: 'namePattern' | 'issuer') => {
    if (!t[field].includes(TENANT_PLACEHOLDER)) {
      placeholdersOk = false;
      at(
        field,
        `must contain ${TENANT_PLACEHOLDER}, so every tenant gets its own ${field === 'issuer' ? 'issuer' : 'scope name'}`,
      );
    }
  };
  needsTenant('namePattern');
  needsTenant('issuer');
  const patterned: [string, string][] = [
    ['namePattern', t.namePattern],
    ['issuer', t.issuer],
    ...t.audiences.map((a, k): [string, string] => [`audiences[${k}]`, a]),
  ];
  for (const [field, value] of patterned) {
    const unknown = (value.match(/\{[^}]*\}/g) ?? []).filter((p) => p !== TENANT_PLACEHOLDER);
    if (unknown.length > 0) {
      placeholdersOk = false;
      at(field, `unknown placeholder ${unknown.join(', ')} (the only one is ${TENANT_PLACEHOLDER})`);
    }
  }

  const tenants = tenantList(t.tenants, t.tenantsFile, at, ctx);
  if (!tenants || !placeholdersOk) return undefined;

  // The settings every tenant shares are checked once, on the first tenant's scope, with the
  // rules and messages of an explicit scope (fields that take {tenant} are checked per tenant too).
  const sampleTenant = tenants.find((e) => SLUG_PATTERN.test(e.id))?.id ?? 'tenant';
  const { name: _n, namePattern, tenants: _t, tenantsFile: _f, issuer, audiences, ...shared } = t;
  const sample = scopeSchema.safeParse({
    ...shared,
    name: fill(namePattern, sampleTenant),
    issuer: fill(issuer, sampleTenant),
    audiences: audiences.map((a) => fill(a, sampleTenant)),
  });
  let settings: ScopeFile | undefined;
  // A pattern already refused at the template is not refused again for every tenant.
  const failed = new Set(sample.success ? [] : sample.error.issues.map((i) => i.path[0]));
  if (!sample.success) {
    for (const issue of sample.error.issues) {
      const [first, ...restPath] = issue.path;
      const field = [first === 'name' ? 'namePattern' : first, ...restPath]
        .map((k) => (typeof k === 'number' ? `[${k}]` : `.${String(k)}`))
        .join('')
        .replace(/^\./, '');
      const templated = first === 'name' || first === 'issuer' || first === 'audiences';
      at(
        field || '(template)',
        `${issue.message}${templated ? ` (with ${TENANT_PLACEHOLDER} = "${sampleTenant}")` : ''}`,
      );
    }
  } else {
    settings = sample.data;
  }
  const policy = settings ? ctx.checkSettings(settings, at) : undefined;

  const scopes: ScopeConfig[] = [];
  const seen = new Map<string, string>();
  let listed = 0;
  let unlisted = 0;
  const tenantProblem = (e: TenantEntry, message: string, scope?: string) => {
    if (listed >= MAX_TENANT_PROBLEMS) {
      unlisted++;
      return;
    }
    listed++;
    ctx.problems.push({
      path: `${base}.${e.where}`,
      ...(scope !== undefined ? { scope } : {}),
      message: `${label}, tenant "${e.id}": ${message}`,
    });
  };
  const sharedAudiences = audiences.some((a) => a.includes(TENANT_PLACEHOLDER))
    ? null
    : Object.freeze(audiences);
  for (const e of tenants) {
    if (!SLUG_PATTERN.test(e.id)) {
      tenantProblem(e, `tenant id ${SLUG_RULE}`);
      continue;
    }
    const first = seen.get(e.id);
    if (first !== undefined) {
      tenantProblem(e, `listed twice (first at ${first})`);
      continue;
    }
    seen.set(e.id, e.where);
    const name = fill(namePattern, e.id);
    const scopeIssuer = fill(issuer, e.id);
    if (!failed.has('name') && !SLUG_PATTERN.test(name))
      tenantProblem(e, `scope name "${name}" ${SLUG_RULE}`, name);
    if (!failed.has('issuer') && !isHttpUrl(scopeIssuer))
      tenantProblem(e, `issuer ${scopeIssuer} must be an http(s) URL`, name);
    const takenBy = ctx.claims.names.get(name);
    if (takenBy !== undefined)
      tenantProblem(e, `scope name "${name}" is already declared by ${takenBy}`, name);
    else ctx.claims.names.set(name, `${label}, tenant "${e.id}"`);
    const issuerOf = ctx.claims.issuers.get(scopeIssuer);
    if (issuerOf !== undefined) {
      tenantProblem(
        e,
        `issuer ${scopeIssuer} is already used by scope ${issuerOf}; issuers must be unique`,
        name,
      );
    } else ctx.claims.issuers.set(scopeIssuer, name);
    if (settings && policy) {
      scopes.push({
        ...settings,
        name,
        issuer: scopeIssuer,
        audiences: sharedAudiences ?? audiences.map((a) => fill(a, e.id)),
        policy,
      });
    }
  }
  if (unlisted > 0) {
    ctx.problems.push({
      path: `${base}.${t.tenantsFile !== undefined ? 'tenantsFile' : 'tenants'}`,
      message: `${label}: ${unlisted} more problem${unlisted === 1 ? '' : 's'} with its tenants (the first ${MAX_TENANT_PROBLEMS} are listed)`,
    });
  }
  return settings && policy ? scopes : undefined;
}

/** The template's tenants, inline or from its file; undefined (with the problem reported) if neither works. */
function tenantList(
  inline: readonly string[] | undefined,
  file: string | undefined,
  at: (field: string, message: string) => void,
  ctx: TemplateContext,
): TenantEntry[] | undefined {
  if ((inline === undefined) === (file === undefined)) {
    at(
      inline === undefined ? 'tenants' : 'tenantsFile',
      'give exactly one of tenants (a list) or tenantsFile (a path)',
    );
    return undefined;
  }
  let entries: TenantEntry[];
  if (inline !== undefined) {
    entries = inline.map((id, k) => ({ id, where: `tenants[${k}]` }));
  } else {
    const absolute = ctx.resolve(file!);
    if (!ctx.readTenantsFile) {
      at('tenantsFile', `${absolute}: tenants files are not read here`);
      return undefined;
    }
    let text: string;
    try {
      text = ctx.readTenantsFile(absolute);
    } catch (e) {
      at('tenantsFile', `cannot read ${absolute}: ${(e as Error).message}`);
      return undefined;
    }
    entries = parseTenantsFile(text);
  }
  if (entries.length === 0) {
    // An emptied or truncated file must not remove every tenant's scope on the next reload.
    at(
      inline !== undefined ? 'tenants' : 'tenantsFile',
      'lists no tenants (remove the template to have none)',
    );
    return undefined;
  }
  return entries;
}

/** A tenants file: one id per line; blank lines and `#` comments are skipped, spaces trimmed. */
function parseTenantsFile(text: string): TenantEntry[] {
  const out: TenantEntry[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const hash = lines[n]!.indexOf('#');
    const id = (hash >= 0 ? lines[n]!.slice(0, hash) : lines[n]!).trim();
    if (id !== '') out.push({ id, where: `tenantsFile line ${n + 1}` });
  }
  return out;
}

function fill(pattern: string, tenant: string): string {
  return pattern.replaceAll(TENANT_PLACEHOLDER, tenant);
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}
