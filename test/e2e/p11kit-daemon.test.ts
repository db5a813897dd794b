/**
 * The HSM is another process, even for SoftHSM2 (DESIGN.md I3): a real `keywarden serve` whose
 * `hsm` backend loads p11-kit's RPC client (p11-kit-client.so) and reaches the SoftHSM2 token
 * through `p11-kit server` on a unix socket, the shape of the quick start, the container and the
 * systemd units. The whole flow works that way (init -> JWKS -> sign over HTTP and with the CLI
 * -> verify over HTTP and with jose), and the daemon's address space never maps libsofthsm2.so, while the server side
 * (one p11-kit-remote process per client connection) does.
 */
import { isPkcs11Config } from '../../src/backends/pkcs11/config';
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startP11KitServer, type P11KitServer } from '../helpers/p11kit-server';

/** The shared objects a process has mapped (from /proc/<pid>/maps), or null once it is gone. */
function mappedLibraries(pid: number): string[] | null {
  try {
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
    return [...new Set(maps.split('\n').flatMap((l) => /\s(\/\S+\.so[.\d]*)$/.exec(l)?.[1] ?? []))];
  } catch {
    return null;
  }
}

/**
 * The serve process(es) of a daemon: every process whose command line names its config and
 * `serve` (with tsx, the launcher and the node process it starts).
 */
function servePids(configPath: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (args.includes(configPath) && args.includes('serve')) out.push(Number(name));
    } catch {
      // ended while we looked
    }
  }
  return out;
}

const isSoftHsm = (lib: string) => /libsofthsm2/.test(lib);
const isP11KitClient = (lib: string) => /p11-kit-client\.so/.test(lib);

describe('SoftHSM2 behind p11-kit server (e2e: keywarden serve loads only p11-kit-client.so)', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let server: P11KitServer;
  let secret: string;

  before(async () => {
    daemon = await startDaemon({
      scopes: [{ name: 'demo' }],
      hsmModule: async (token) => {
        server = await startP11KitServer(token);
        return { module: server.modulePath, moduleEnv: server.moduleEnv, close: () => server.stop() };
      },
    });
    const r = await daemon.cli(['--json', 'clients', 'add', 'issuer', '--grant', 'demo:sign,verify']);
    assert.equal(r.code, 0, r.stderr);
    secret = (JSON.parse(r.stdout) as { secret: string }).secret;
  });

  after(async () => {
    await daemon?.stop();
  });

  it('the daemon is configured with p11-kit-client.so and the server address, not SoftHSM2', () => {
    const hsm = daemon.config.backends.hsm;
    assert.ok(isPkcs11Config(hsm));
    assert.ok(isP11KitClient(hsm.module), hsm.module);
    assert.deepEqual(Object.keys(hsm.moduleEnv), ['P11_KIT_SERVER_ADDRESS']);
  });

  it('init -> JWKS -> sign (HTTP, CLI) -> verify (HTTP, jose) through the RPC path', async () => {
    const jwks = (await (await fetch(daemon.jwksUrl('demo'))).json()) as {
      keys: { kid: string; d?: unknown }[];
    };
    assert.equal(jwks.keys.length, 1, 'init made the first key through p11-kit');
    assert.equal(jwks.keys[0]!.d, undefined);

    const tokens: string[] = [];
    // A few at once: the daemon's session pool shares one RPC connection.
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const res = await fetch(`${daemon.baseUrl}/v1/scopes/demo/sign`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
          body: JSON.stringify({ claims: { sub: `user-${i}`, aud: 'demo-api' }, ttlSeconds: 120 }),
        });
        const body = (await res.json()) as { token?: string };
        assert.equal(res.status, 200, JSON.stringify(body));
        tokens.push(body.token!);
      }),
    );

    const verify = async (token: string, audience: string) => {
      const res = await fetch(`${daemon.baseUrl}/v1/scopes/demo/verify`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ token, audience }),
      });
      return (await res.json()) as { valid?: boolean };
    };
    assert.equal((await verify(tokens[0]!, 'demo-api')).valid, true);
    assert.equal((await verify(tokens[0]!, 'other-api')).valid, false);

    const keySet = createRemoteJWKSet(new URL(daemon.jwksUrl('demo')));
    for (const t of tokens) {
      const { payload, protectedHeader } = await jwtVerify(t, keySet, {
        issuer: daemon.issuer('demo'),
        audience: 'demo-api',
      });
      assert.equal(protectedHeader.kid, jwks.keys[0]!.kid);
      assert.match(String(payload.sub), /^user-\d$/);
    }

    // The CLI signs too (a process of its own: its own connection and p11-kit-remote).
    const cliSign = await daemon.cli([
      'sign',
      '--scope',
      'demo',
      '--claims',
      '{"sub":"op","aud":"demo-api"}',
    ]);
    assert.equal(cliSign.code, 0, cliSign.stderr);
    assert.equal((await verify(cliSign.stdout.trim(), 'demo-api')).valid, true);
  });

  it('after serving signatures, the daemon maps p11-kit-client.so and never libsofthsm2.so', () => {
    const pids = servePids(daemon.configPath);
    assert.ok(pids.length > 0, 'serve process not found');
    const libs = pids.map((pid) => ({ pid, libs: mappedLibraries(pid) ?? [] }));
    for (const { pid, libs: l } of libs) {
      assert.deepEqual(l.filter(isSoftHsm), [], `serve process ${pid} maps SoftHSM2`);
    }
    assert.ok(
      libs.some(({ libs: l }) => l.some(isP11KitClient)),
      `no serve process maps p11-kit-client.so: ${JSON.stringify(libs.map(({ pid, libs: l }) => [pid, l.length]))}`,
    );
  });

  it('the token is in the server’s processes: a p11-kit-remote per client maps libsofthsm2.so', () => {
    const remotes = server.remotePids();
    assert.ok(remotes.length >= 1, `no p11-kit-remote child of the server: ${server.output()}`);
    const withSoftHsm = remotes.filter((pid) => (mappedLibraries(pid) ?? []).some(isSoftHsm));
    assert.ok(
      withSoftHsm.length >= 1,
      'the server side does not map SoftHSM2: the check above proves nothing',
    );
    for (const pid of remotes) {
      assert.equal(readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'p11-kit-remote');
    }
  });
});
