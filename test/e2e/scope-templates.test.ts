/**
 * Scope templates end to end (issue #20 part 3): a config whose tenant scopes come from a template
 * and a tenants file passes `config check`, `serve --workers 2` gives every tenant its own keys,
 * JWKS and issuer, and a tenant added to the file takes effect on SIGHUP in every worker.
 */
import { strict as assert } from 'node:assert';
import { request } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runKeywarden } from '../helpers/cli';
import { freePort, startServe, type ServeProcess } from '../helpers/daemon';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { until } from '../helpers/wait';

/** One GET on a fresh connection, so the cluster's round robin reaches each worker in turn. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      r.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('scope templates (e2e): config check, serve --workers 2, SIGHUP', function () {
  this.timeout(240_000);
  let token: SoftHsmToken;
  let configPath: string;
  let tenantsPath: string;
  let serve: ServeProcess | null = null;
  let baseUrl: string;
  const cli = (args: string[]) => runKeywarden(['-c', configPath, ...args], { timeoutMs: 120_000 });

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    const base = testConfigDocument(token, [{ name: 'ops', issuer: `${baseUrl}/scopes/ops` }], {
      logLevel: 'info',
      server: { host: '127.0.0.1', port, keyRefreshSeconds: 1 },
    });
    const { name: _n, issuer: _i, audiences: _a, ...shared } = base.scopes[0]!;
    tenantsPath = join(token.dir, 'tenants.txt');
    await writeFile(tenantsPath, '# tenants\nacme\nglobex\n');
    const doc = {
      ...base,
      scopeTemplates: [
        {
          ...shared,
          name: 'tenants',
          namePattern: 't-{tenant}',
          issuer: `${baseUrl}/scopes/t-{tenant}`,
          audiences: ['api://{tenant}'],
          tenantsFile: 'tenants.txt',
        },
      ],
    };
    configPath = join(token.dir, 'keywarden.yaml');
    await writeFile(configPath, JSON.stringify(doc, null, 2), { mode: 0o600 });
  });

  after(async () => {
    await serve?.stop();
    await token?.cleanup();
  });

  it('config check lists every tenant scope with its issuer and audience', async () => {
    const r = await cli(['--json', 'config', 'check']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { valid: boolean; scopes: { name: string; issuer: string }[] };
    assert.equal(out.valid, true);
    assert.deepEqual(
      out.scopes.map((s) => [s.name, s.issuer]),
      [
        ['ops', `${baseUrl}/scopes/ops`],
        ['t-acme', `${baseUrl}/scopes/t-acme`],
        ['t-globex', `${baseUrl}/scopes/t-globex`],
      ],
    );
  });

  it('config check refuses a bad tenant with exit 3, naming the template, the line and the tenant', async () => {
    await writeFile(tenantsPath, 'acme\nGlobex\n');
    try {
      const r = await cli(['config', 'check']);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      assert.match(r.stderr, /scopeTemplates\[0\]\.tenantsFile line 2: template "tenants", tenant "Globex"/);
    } finally {
      await writeFile(tenantsPath, '# tenants\nacme\nglobex\n');
    }
  });

  it('serve gives each tenant its own keys and issuer; a tenant added to the file arrives on SIGHUP', async () => {
    const init = await cli(['init']);
    assert.equal(init.code, 0, init.stderr);
    serve = await startServe(configPath, { port: Number(new URL(baseUrl).port), args: ['--workers', '2'] });
    const kids = new Map<string, string>();
    for (const scope of ['t-acme', 't-globex']) {
      const jwks = await get(`${baseUrl}/scopes/${scope}/.well-known/jwks.json`);
      assert.equal(jwks.status, 200, jwks.body);
      const keys = (JSON.parse(jwks.body) as { keys: { kid: string; iss: string }[] }).keys;
      assert.ok(keys.length >= 1, jwks.body);
      assert.equal(keys[0]!.iss, `${baseUrl}/scopes/${scope}`);
      kids.set(scope, keys[0]!.kid);
    }
    assert.notEqual(kids.get('t-acme'), kids.get('t-globex'));
    assert.equal((await get(`${baseUrl}/scopes/t-initech/.well-known/jwks.json`)).status, 404);

    await writeFile(tenantsPath, '# tenants\nacme\nglobex\ninitech\n');
    // The daemon's own pid from its log: from source, serve.pid is tsx's, which does not pass SIGHUP on.
    const pid = await until(
      'keywarden serving',
      async () => /"pid":(\d+)[^\n]*"msg":"keywarden serving"/.exec(serve!.output())?.[1],
      { ms: 60_000, context: () => serve!.output() },
    );
    process.kill(Number(pid), 'SIGHUP');
    // Six fresh connections in a row answer with a key: both workers serve the new tenant.
    await until(
      'the added tenant on every worker',
      async () => {
        for (let i = 0; i < 6; i++) {
          const r = await get(`${baseUrl}/scopes/t-initech/.well-known/jwks.json`);
          if (r.status !== 200 || (JSON.parse(r.body) as { keys: unknown[] }).keys.length === 0)
            return undefined;
        }
        return true;
      },
      { ms: 60_000, context: () => serve!.output() },
    );
    const discovery = await get(`${baseUrl}/scopes/t-initech/.well-known/openid-configuration`);
    assert.equal((JSON.parse(discovery.body) as { issuer: string }).issuer, `${baseUrl}/scopes/t-initech`);
  });
});
