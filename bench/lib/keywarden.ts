import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WORKER_HEADER } from '../../src/cluster/worker-identity';
import { loadConfig } from '../../src/config/load-config';
import { pickSigningKey } from '../../src/policy/next-actions';
import type { KeywardenConfig } from '../../src/policy/scope';
import { openStore } from '../../src/store/data-source';
import { KeyRepository } from '../../src/store/key-repository';
import { testConfigDocument, type TestScope } from '../../test/helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../../test/helpers/softhsm';
import { compiled } from './build';
import { freePort, REPO_ROOT, startServer, type Server } from './processes';

const CLI_ENTRY = compiled('src/cli/main.ts');

/** Thread-pool size given to every server process of a comparison (keywarden and yardsticks alike). */
export const BENCH_THREADPOOL = '16';

export interface SigningKeyInfo {
  kid: string;
  alg: string;
  /** CKA_ID (hex) of the private key on the token. */
  ckaId: string;
}

/** A keywarden installation for a benchmark: its own SoftHSM2 token, store and config. */
export interface KeywardenSetup {
  token: SoftHsmToken;
  configPath: string;
  config: KeywardenConfig;
  port: number;
  baseUrl: string;
  cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** `keywarden clients add NAME --grant ...` through the real CLI; returns the secret. */
  addClient(name: string, grants: string[]): Promise<string>;
  signingKey(scope: string): Promise<SigningKeyInfo>;
  /** `keywarden serve --workers N`, ready once every worker listens. */
  serve(workers: number, env?: Record<string, string>, nodeArgs?: string[]): Promise<Server>;
  cleanup(): Promise<void>;
}

export interface SetupOptions {
  scopes: TestScope[];
  /** PKCS#11 sessions per process. */
  sessions: number;
  keyRefreshSeconds?: number;
  logLevel?: string;
  /** Run `keywarden init` (creates every scope's first key). Default true. */
  init?: boolean;
  /** More `server` settings for the config (e.g. keyEvents). */
  server?: Record<string, unknown>;
  /**
   * `scopeTemplates` entries as written in YAML, given the base URL (for issuers); their fields
   * other than the tenants default to a TestScope's (backend hsm, ES256, SHORT_POLICY).
   */
  scopeTemplates?: (baseUrl: string) => Record<string, unknown>[];
}

/** Creates a token, writes the config and (by default) runs `keywarden init`. */
export async function prepareKeywarden(o: SetupOptions): Promise<KeywardenSetup> {
  const token = await createSoftHsmToken();
  await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const doc = testConfigDocument(
    token,
    o.scopes.map((s) => ({ ...s, issuer: s.issuer ?? `${baseUrl}/scopes/${s.name}` })),
    {
      logLevel: o.logLevel ?? 'warn',
      server: { host: '127.0.0.1', port, keyRefreshSeconds: o.keyRefreshSeconds ?? 2, ...o.server },
    },
  );
  doc.backends.hsm.sessions = o.sessions;
  const templates = o.scopeTemplates?.(baseUrl);
  if (templates) Object.assign(doc, { scopeTemplates: templates });
  const configPath = join(token.dir, 'keywarden.yaml');
  await writeFile(configPath, JSON.stringify(doc), { mode: 0o600 });
  const config = loadConfig(configPath);

  const cli = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((res, rej) => {
      const child = spawn(process.execPath, [CLI_ENTRY, '-c', configPath, ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, KEYWARDEN_CLI_MAIN: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', rej);
      child.on('close', (code) => res({ code, stdout, stderr }));
    });

  if (o.init !== false) {
    const r = await cli(['init']);
    if (r.code !== 0) throw new Error(`keywarden init failed: ${r.stderr}`);
  }

  return {
    token,
    configPath,
    config,
    port,
    baseUrl,
    cli,
    async addClient(name, grants) {
      // Directly on the store (--local), whether or not a server runs yet.
      const r = await cli([
        '--local',
        '--json',
        'clients',
        'add',
        name,
        ...grants.flatMap((g) => ['--grant', g]),
      ]);
      if (r.code !== 0) throw new Error(`clients add failed: ${r.stderr}`);
      return (JSON.parse(r.stdout) as { secret: string }).secret;
    },
    async signingKey(scope) {
      const ds = await openStore(config.store.url);
      try {
        const keys = (await new KeyRepository(ds).listByScope(scope)).filter((k) => k.status === 'ready');
        const k = pickSigningKey(keys, new Date());
        if (!k?.kid) throw new Error(`scope ${scope} has no signing key`);
        return { kid: k.kid, alg: k.alg, ckaId: String(k.backendRef.ref.id) };
      } finally {
        await ds.destroy();
      }
    },
    serve(workers, env = {}, nodeArgs = []) {
      let listening = 0;
      return startServer({
        name: `keywarden --workers ${workers}`,
        args: [CLI_ENTRY, '-c', configPath, '--log-level', 'info', 'serve', '--workers', String(workers)],
        env: { KEYWARDEN_CLI_MAIN: '1', UV_THREADPOOL_SIZE: BENCH_THREADPOOL, ...env },
        nodeArgs,
        baseUrl,
        timeoutMs: 600_000,
        ready: (out) => {
          if (workers === 1) return out.includes('"msg":"keywarden serving"');
          listening = (out.match(/"msg":"worker listening"/g) ?? []).length;
          return listening >= workers;
        },
      });
    },
    cleanup: () => token.cleanup(),
  };
}

/**
 * The headers keywarden adds to a JWKS answer beyond a bare route's content type, with the
 * values it sent in `res`: the caching pair and, where `server.workerHeader` is on, the worker header. The
 * yardsticks send them as constants, to tell their cost apart from keywarden's own work.
 */
export function headersKeywardenAdds(res: Response): Record<string, string> {
  const headers: Record<string, string> = {
    'cache-control': res.headers.get('cache-control') ?? '',
    etag: res.headers.get('etag') ?? '',
  };
  const worker = res.headers.get(WORKER_HEADER);
  if (worker !== null) headers[WORKER_HEADER] = worker;
  return headers;
}
