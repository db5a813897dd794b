import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import type { KeywardenConfig } from '../../src/policy/scope';
import { validateConfig } from '../../src/config/validate-config';
import { createSoftHsmToken, type SoftHsmToken } from './softhsm';

/** A scope for tests: defaults give a short, valid policy (minutes) unless overridden. */
export interface TestScope {
  name: string;
  issuer?: string;
  audiences?: string[];
  alg?: string;
  schedule?: string;
  policy?: Partial<
    Record<
      | 'prepublish'
      | 'activeFor'
      | 'verifyGrace'
      | 'maxTokenTtl'
      | 'destroyAfter'
      | 'maxKeyLifetime'
      | 'jwksMaxAge',
      string
    >
  >;
}

/**
 * A policy measured in seconds, for end-to-end tests against a running daemon whose keys must
 * rotate while the test watches (destruction stays minutes away).
 */
export const SECONDS_POLICY = {
  jwksMaxAge: '1s',
  prepublish: '2s',
  activeFor: '3s',
  verifyGrace: '2s',
  maxTokenTtl: '2s',
  destroyAfter: '10m',
  maxKeyLifetime: '1h',
};

export const SHORT_POLICY = {
  jwksMaxAge: '1m',
  prepublish: '2m',
  activeFor: '10m',
  verifyGrace: '5m',
  maxTokenTtl: '5m',
  destroyAfter: '10m',
  maxKeyLifetime: '20m',
};

/** The config document (as parsed YAML) for a token and scopes. */
export function testConfigDocument(
  token: SoftHsmToken,
  scopes: TestScope[],
  extra: Record<string, unknown> = {},
) {
  return {
    dataDir: token.dir,
    logLevel: 'silent',
    store: { url: 'sqlite:keywarden.db' },
    backends: {
      hsm: {
        type: 'pkcs11',
        module: token.modulePath,
        tokenLabel: token.tokenLabel,
        pin: { file: join(token.dir, 'user-pin') },
        moduleEnv: token.env,
        sessions: 2,
      },
    },
    scopes: scopes.map((s) => ({
      name: s.name,
      issuer: s.issuer ?? `https://issuer.test/${s.name}`,
      audiences: s.audiences ?? [`${s.name}-api`],
      alg: s.alg ?? 'ES256',
      backend: 'hsm',
      schedule: s.schedule ?? '* * * * *',
      production: false,
      policy: { ...SHORT_POLICY, ...s.policy },
    })),
    // The admin socket in the token's directory, in the group of the user the tests run as.
    admin: { socket: { path: 'admin.sock', group: null } },
    ...extra,
  };
}

export interface TestRuntime {
  rt: Runtime;
  ctx: Runtime['ctx'];
  /** The use-case facade, as adapters see the runtime. */
  kw: Runtime['keywarden'];
  clock: FakeClock;
  token: SoftHsmToken;
  config: KeywardenConfig;
  close(): Promise<void>;
}

/**
 * An in-process keywarden on a fresh SoftHSM2 token and SQLite store, driven by a FakeClock:
 * the real lifecycle, store and backend, with time moved by the test instead of slept.
 */
export async function startTestRuntime(
  scopes: TestScope[],
  opts: {
    clock?: FakeClock;
    storeUrl?: string;
    /** Record integrity findings in the audit log, as the daemon's scheduling process does. */
    auditIntegrity?: boolean;
    /** Where the runtime logs (default: nowhere). */
    log?: pino.Logger;
    /** Runs after the token and its PIN file exist, before the runtime opens (e.g. to break it). */
    beforeOpen?: (token: SoftHsmToken) => Promise<void>;
    /** More top-level config sections, as written in YAML (e.g. `scheduler`). */
    configExtra?: Record<string, unknown>;
  } = {},
): Promise<TestRuntime> {
  const token = await createSoftHsmToken();
  await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
  const doc = testConfigDocument(token, scopes, {
    ...(opts.storeUrl ? { store: { url: opts.storeUrl } } : {}),
    ...opts.configExtra,
  });
  const config = validateConfig(doc, { source: '<test>', baseDir: token.dir });
  const clock = opts.clock ?? new FakeClock(Date.now());
  const log = opts.log ?? pino({ level: 'silent' });
  await opts.beforeOpen?.(token);
  const rt = await openRuntime(config, {
    log,
    clock,
    audit: storeAuditLog(),
    auditIntegrity: opts.auditIntegrity ?? false,
  });
  return {
    rt,
    ctx: rt.ctx,
    kw: rt.keywarden,
    clock,
    token,
    config,
    async close() {
      await rt.close();
      await token.cleanup();
    },
  };
}
