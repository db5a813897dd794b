/**
 * TLS on the listener and mutual TLS for API clients, end to end: a real `keywarden serve` with
 * `server.tls` (a certificate from a private CA made by openssl, 127.0.0.1/localhost SANs) and
 * `server.tls.clientCaFile`, reached by real TLS clients: Node's https, `curl --cacert`, and the
 * verify library with a `ca`. API clients bound to client certificates with the real CLI
 * (`clients add --cert`) sign; an unknown certificate, a certificate of another CA, another
 * client's certificate and no certificate are refused with the right status; a bearer secret still
 * works; and a store write that rebinds a client row to another certificate is refused, because
 * the binding is sealed by the HSM audit key.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import type { Runtime } from '../../src/main';
import { createVerifier } from '@keywarden/verify';
import { runKeywarden } from '../helpers/cli';
import { clientWriter } from '../helpers/client-tamper';
import { freePort, startDaemon, type Daemon } from '../helpers/daemon';
import { createTestPki, type IssuedCert, type TestPki } from '../helpers/tls-certs';
import { until } from '../helpers/wait';

const run = promisify(execFile);
const SCOPES = [{ name: 'consumer' }, { name: 'enterprise' }];

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

describe('TLS listener and mutual TLS for API clients (e2e)', function () {
  this.timeout(180_000);
  let pki: TestPki;
  let otherPki: TestPki;
  let daemon: Daemon;
  let rt: Runtime | undefined;
  /** Bound to consumer:sign,verify. */
  let alice: IssuedCert;
  /** Bound to enterprise:sign only. */
  let bob: IssuedCert;
  /** Issued by the client CA, bound to no client. */
  let dave: IssuedCert;
  /** Issued by another CA. */
  let mallory: IssuedCert;
  /** A bearer client with consumer:sign. */
  let carolSecret: string;

  /** An HTTPS request trusting the test CA, with a client certificate when given. */
  function call(
    path: string,
    opts: { method?: string; body?: unknown; cert?: IssuedCert; bearer?: string; ca?: string } = {},
  ): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
      const req = request(
        `${daemon.baseUrl}${path}`,
        {
          method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
          ca: opts.ca ?? pki.ca.certPem,
          ...(opts.cert ? { cert: opts.cert.certPem, key: opts.cert.keyPem } : {}),
          headers: {
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(opts.bearer ? { authorization: `Bearer ${opts.bearer}` } : {}),
          },
          // A fresh connection per request: each carries its own client certificate.
          agent: false,
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => {
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(text) as Record<string, unknown>;
            } catch {
              parsed = { text };
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  const sign = (scope: string, opts: { cert?: IssuedCert; bearer?: string }) =>
    call(`/v1/scopes/${scope}/sign`, { body: { claims: { aud: `${scope}-api`, sub: 'x' } }, ...opts });
  const errorCode = (a: Answer) => (a.body.error as { code?: string } | undefined)?.code;

  before(async () => {
    pki = await createTestPki('tls');
    otherPki = await createTestPki('other');
    const server = await pki.server();
    [alice, bob, dave, mallory] = await Promise.all([
      pki.client('alice'),
      pki.client('bob'),
      pki.client('dave'),
      otherPki.client('mallory'),
    ]);
    daemon = await startDaemon({
      scopes: SCOPES,
      logLevel: 'info',
      tls: {
        certFile: server.certFile,
        keyFile: server.keyFile,
        clientCaFile: pki.ca.certFile,
        trust: pki.ca.certPem,
      },
    });
    for (const [name, grant, cert] of [
      ['alice', 'consumer:sign,verify', alice],
      ['bob', 'enterprise:sign', bob],
    ] as const) {
      const r = await daemon.cli([
        '--json',
        'clients',
        'add',
        name,
        '--grant',
        grant,
        '--cert',
        cert.certFile,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { certSpkiSha256: string; auth: string[]; secret?: string };
      assert.equal(out.certSpkiSha256, cert.spkiSha256);
      assert.deepEqual(out.auth, ['certificate']);
      assert.equal(out.secret, undefined, 'a certificate client gets no secret');
    }
    const carol = await daemon.cli(['--json', 'clients', 'add', 'carol', '--grant', 'consumer:sign']);
    assert.equal(carol.code, 0, carol.stderr);
    carolSecret = (JSON.parse(carol.stdout) as { secret: string }).secret;
  });

  after(async () => {
    await rt?.close();
    await daemon?.stop();
    await pki?.cleanup();
    await otherPki?.cleanup();
  });

  describe('the listener', () => {
    it('serves the JWKS over TLS to Node https trusting the private CA, and discovery advertises https', async () => {
      const jwks = await call('/scopes/consumer/.well-known/jwks.json');
      assert.equal(jwks.status, 200);
      const keys = jwks.body.keys as { kty: string; iss: string }[];
      assert.ok(keys.length >= 1);
      assert.equal(keys[0]!.iss, daemon.issuer('consumer'));
      assert.match(daemon.issuer('consumer'), /^https:\/\/127\.0\.0\.1:\d+\/scopes\/consumer$/);
      const discovery = await call('/scopes/consumer/.well-known/openid-configuration');
      assert.equal(discovery.status, 200);
      assert.equal(discovery.body.issuer, daemon.issuer('consumer'));
      assert.equal(discovery.body.jwks_uri, daemon.jwksUrl('consumer'));
      assert.match(String(discovery.body.jwks_uri), /^https:\/\//);
    });

    it('serves the JWKS to curl --cacert (TLS 1.2 and 1.3), and curl without the CA refuses the server', async () => {
      const url = daemon.jwksUrl('consumer');
      for (const version of [['--tlsv1.2', '--tls-max', '1.2'], ['--tlsv1.3']]) {
        const { stdout } = await run('curl', ['-sS', '--fail', '--cacert', pki.ca.certFile, ...version, url]);
        const body = JSON.parse(stdout) as { keys: { kid: string }[] };
        assert.ok(body.keys.length >= 1, stdout);
      }
      await assert.rejects(run('curl', ['-sS', '--fail', url]), (e: { code?: number }) => e.code === 60);
    });

    it('refuses TLS 1.1 and plain HTTP on the TLS port', async () => {
      const port = Number(new URL(daemon.baseUrl).port);
      const protocol = await new Promise<string>((resolve) => {
        const s = connect({
          host: '127.0.0.1',
          port,
          ca: pki.ca.certPem,
          minVersion: 'TLSv1',
          maxVersion: 'TLSv1.1',
          // OpenSSL 3's default level forbids TLS 1.1 on this side too; level 0 lets it try.
          ciphers: 'DEFAULT:@SECLEVEL=0',
        });
        s.on('secureConnect', () => {
          resolve(String(s.getProtocol()));
          s.destroy();
        });
        s.on('error', (e: NodeJS.ErrnoException) => resolve(`refused: ${e.code ?? e.message}`));
      });
      assert.match(protocol, /^refused/);
      const plain = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.status,
        () => 'refused',
      );
      assert.notEqual(plain, 200);
    });

    it('the verify library with `ca` discovers the keys over TLS and verifies a token; without it, the private CA is not trusted', async () => {
      const signed = await sign('consumer', { bearer: carolSecret });
      assert.equal(signed.status, 200, JSON.stringify(signed.body));
      const token = signed.body.token as string;
      const verifier = createVerifier({
        issuer: daemon.issuer('consumer'),
        audience: 'consumer-api',
        ca: pki.ca.certPem,
      });
      const ok = await verifier.verify(token);
      assert.equal(ok.valid, true, JSON.stringify(ok));
      const otherAudience = createVerifier({
        issuer: daemon.issuer('consumer'),
        audience: 'other-api',
        ca: pki.ca.certPem,
      });
      const wrongAud = await otherAudience.verify(token);
      assert.equal(wrongAud.valid === false && wrongAud.reason, 'audience_mismatch');
      const untrusting = createVerifier({ issuer: daemon.issuer('consumer'), audience: 'consumer-api' });
      const refused = await untrusting.verify(token);
      assert.equal(refused.valid, false);
      assert.equal(refused.valid === false && refused.reason, 'jwks_unavailable');
      const otherCa = createVerifier({
        issuer: daemon.issuer('consumer'),
        audience: 'consumer-api',
        ca: otherPki.ca.certPem,
      });
      assert.equal((await otherCa.verify(token)).valid, false);
    });
  });

  describe('mutual TLS', () => {
    it('a client certificate bound to a client signs, and the token verifies', async () => {
      const r = await sign('consumer', { cert: alice });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const v = await call('/v1/scopes/consumer/verify', {
        body: { token: r.body.token, audience: 'consumer-api' },
        cert: alice,
      });
      assert.equal(v.status, 200, JSON.stringify(v.body));
      assert.equal(v.body.valid, true);
    });

    it('refuses an unknown certificate (401), one of another CA (401), another client’s (403) and none (401)', async () => {
      const unknown = await sign('consumer', { cert: dave });
      assert.equal(unknown.status, 401, JSON.stringify(unknown.body));
      assert.equal(errorCode(unknown), 'UNAUTHENTICATED');
      const foreign = await sign('consumer', { cert: mallory });
      assert.equal(foreign.status, 401, JSON.stringify(foreign.body));
      const others = await sign('consumer', { cert: bob });
      assert.equal(others.status, 403, JSON.stringify(others.body));
      assert.equal(errorCode(others), 'FORBIDDEN');
      const none = await sign('consumer', {});
      assert.equal(none.status, 401, JSON.stringify(none.body));
      // bob's certificate works where bob has a grant.
      assert.equal((await sign('enterprise', { cert: bob })).status, 200);
    });

    it('a bearer secret still works, and decides alone when a certificate is presented too', async () => {
      assert.equal((await sign('consumer', { bearer: carolSecret })).status, 200);
      // carol's secret over bob's connection: carol (consumer:sign), not bob (enterprise only).
      assert.equal((await sign('consumer', { bearer: carolSecret, cert: bob })).status, 200);
      // a wrong secret is not rescued by alice's good certificate.
      const wrong = await sign('consumer', { bearer: `${carolSecret.slice(0, -4)}AAAA`, cert: alice });
      assert.equal(wrong.status, 401);
    });

    it('clients add --cert refuses bad input and writes nothing', async () => {
      const before = await daemon.cli(['--json', 'clients', 'list']);
      const expired = await pki.server('expired-client', {
        notBefore: '20200101000000Z',
        notAfter: '20210101000000Z',
      });
      const chained = await pki.intermediateClient('eve-sub');
      const cases: [string[], number][] = [
        [['--cert', expired.certFile], 2],
        [['--cert', '/nonexistent/x.crt'], 2],
        [['--cert', pki.ca.certFile], 2], // a CA certificate
        [['--cert', mallory.certFile], 2], // not issued by server.tls.clientCaFile
        [['--cert', chained.certFile], 2], // issued by an intermediate under the client CA, not by it
        [['--cert', dave.keyFile], 2], // no certificate in it
        [['--cert', alice.certFile], 5], // already bound to alice
      ];
      for (const [args, code] of cases) {
        const r = await daemon.cli(['clients', 'add', 'eve', '--grant', 'consumer:sign', ...args]);
        assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
        assert.ok(r.stderr.trim().length > 0);
      }
      const rotate = await daemon.cli(['clients', 'rotate-secret', 'alice']);
      assert.equal(rotate.code, 2, rotate.stderr);
      const after = await daemon.cli(['--json', 'clients', 'list']);
      assert.equal(after.stdout, before.stdout);
    });

    it('a client row rebound to another certificate in the store is refused: the seal covers the binding', async () => {
      rt = await daemon.openRuntime();
      const rows = (await rt.ds.query('SELECT id, name FROM clients')) as { id: string; name: string }[];
      const aliceId = rows.find((r) => r.name === 'alice')!.id;
      const carolId = rows.find((r) => r.name === 'carol')!.id;
      const writer = clientWriter(rt.ds);
      // The daemon reports a refused row (error log) at the poll that saw it change, the same poll
      // that drops every cached answer: from then on a request is judged on the row as it is now.
      // Waiting ends there, or as soon as the attack works (then the assertion below fails).
      const refusedLogged = (name: string) =>
        daemon
          .output()
          .split('\n')
          .some(
            (l) =>
              l.includes('API client refused') &&
              l.includes(`"client":"${name}"`) &&
              l.includes('seal-invalid'),
          );
      const attackSettled = (name: string, attempt: () => Promise<Answer>) =>
        until(
          `the daemon judging ${name}'s changed row`,
          async () => {
            const r = await attempt();
            return r.status !== 401 || refusedLogged(name) ? r : undefined;
          },
          { ms: 15_000, context: () => daemon.output() },
        );
      // An attacker with store access moves alice's grants to dave's certificate: refused.
      await writer.update(aliceId, { cert_spki_sha256: dave.spkiSha256 });
      const rebound = await attackSettled('alice', () => sign('consumer', { cert: dave }));
      assert.equal(rebound.status, 401, JSON.stringify(rebound.body));
      assert.equal((await sign('consumer', { cert: dave })).status, 401);
      // ... or binds dave's certificate to carol's row, next to its secret: refused, secret too.
      await writer.update(aliceId, { cert_spki_sha256: null });
      await writer.update(carolId, { cert_spki_sha256: dave.spkiSha256 });
      const added = await attackSettled('carol', () => sign('consumer', { cert: dave }));
      assert.equal(added.status, 401, JSON.stringify(added.body));
      assert.equal((await sign('consumer', { bearer: carolSecret })).status, 401);
      // alice's own certificate found no row while unbound; the listing shows what was refused.
      assert.equal((await sign('consumer', { cert: alice })).status, 401);
      const list = await daemon.cli(['--json', 'clients', 'list']);
      const listed = JSON.parse(list.stdout) as { name: string; trust: string; reason?: string }[];
      assert.equal(listed.find((c) => c.name === 'carol')?.reason, 'seal-invalid');
      // Putting the rows back as sealed restores both (the seal, not the store, decides).
      await writer.update(carolId, { cert_spki_sha256: null });
      await writer.update(aliceId, { cert_spki_sha256: alice.spkiSha256 });
      await until(
        'the restored rows trusted again',
        async () => {
          const a = await sign('consumer', { cert: alice });
          const c = await sign('consumer', { bearer: carolSecret });
          return a.status === 200 && c.status === 200 ? true : undefined;
        },
        { ms: 15_000 },
      );
    });

    it('a removed certificate client is refused within server.keyRefreshSeconds', async () => {
      assert.equal((await sign('enterprise', { cert: bob })).status, 200);
      const removed = await daemon.cli(['clients', 'remove', 'bob']);
      assert.equal(removed.code, 0, removed.stderr);
      await until(
        "bob's certificate refused",
        async () => ((await sign('enterprise', { cert: bob })).status === 401 ? true : undefined),
        { ms: 10_000 },
      );
    });

    it('the audit log names certificate clients: their signatures and their refusals', async () => {
      assert.equal(await daemon.shutdown(), 0, daemon.output());
      // The daemon has stopped (its request audit flushed): read the store directly.
      const tail = await daemon.cli(['--local', '--json', 'audit', 'tail', '--limit', '1000']);
      assert.equal(tail.code, 0, tail.stderr);
      const records = JSON.parse(tail.stdout) as {
        type: string;
        actor: string;
        data: Record<string, unknown>;
      }[];
      const created = records.filter((r) => r.type === 'client.created' && r.data.name === 'alice');
      assert.equal(created.length, 1);
      assert.equal(created[0]!.data.certSpkiSha256, alice.spkiSha256);
      const signers = new Set(records.filter((r) => r.type === 'sign.activity').map((r) => r.actor));
      for (const c of ['client:alice', 'client:bob', 'client:carol']) assert.ok(signers.has(c), c);
      const denied = records.filter((r) => r.type === 'access.denied');
      const reasons = new Set(denied.map((r) => r.data.reason));
      for (const reason of ['unknown-certificate', 'untrusted-certificate', 'no-credentials'])
        assert.ok(reasons.has(reason), `${reason} in ${[...reasons].join(', ')}`);
      assert.ok(denied.some((r) => r.actor === 'client:bob' && r.data.reason === 'no-sign-grant'));
      assert.equal(records.filter((r) => r.type === 'client.removed' && r.data.name === 'bob').length, 1);
    });
  });

  describe('bad TLS files (after the daemon stopped, on its config and store)', () => {
    /** The daemon's config with other server.tls files, as a new file. */
    async function configWith(name: string, tls: Record<string, string>): Promise<string> {
      const doc = JSON.parse(await readFile(daemon.configPath, 'utf8')) as {
        server: Record<string, unknown>;
      };
      doc.server.tls = tls;
      const file = daemon.configPath.replace(/\.yaml$/, `-${name}.yaml`);
      await writeFile(file, JSON.stringify(doc, null, 2));
      return file;
    }
    const storeDigest = async () =>
      createHash('sha256')
        .update(await readFile(daemon.config.store.url.replace(/^sqlite:/, '')))
        .digest('hex');

    it('config check names an expired certificate and a key of another certificate (exit 3)', async () => {
      const expired = await pki.server('expired', {
        notBefore: '20200101000000Z',
        notAfter: '20210101000000Z',
      });
      const file = await configWith('expired', { certFile: expired.certFile, keyFile: alice.keyFile });
      const r = await runKeywarden(['-c', file, 'config', 'check']);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      assert.match(r.stderr, /server\.tls\.certFile: .*expired on 2021-01-01/);
      assert.match(r.stderr, /server\.tls\.keyFile: .*is not the private key of the certificate/);
      const json = await runKeywarden(['-c', file, '--json', 'config', 'check']);
      assert.equal(json.code, 3);
    });

    it('serve refuses a missing key file before it claims to serve, and writes nothing', async () => {
      const server = await pki.server('server2');
      const file = await configWith('nokey', {
        certFile: server.certFile,
        keyFile: `${server.keyFile}.missing`,
      });
      const before = await storeDigest();
      const port = await freePort();
      const r = await runKeywarden(['-c', file, 'serve', '--workers', '2', '--port', String(port)]);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      assert.match(r.stderr, /server\.tls\.keyFile: cannot read .*no such file/);
      assert.doesNotMatch(r.stdout + r.stderr, /keywarden serving/);
      assert.equal(await storeDigest(), before);
      const listening = await fetch(`https://127.0.0.1:${port}/healthz`).then(
        () => true,
        () => false,
      );
      assert.equal(listening, false);
    });
  });
});
