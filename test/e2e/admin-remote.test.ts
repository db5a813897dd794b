/**
 * The admin API for remote operators, end to end: a `keywarden serve --workers 2` with
 * `server.tls.operatorCaFile` (an operator CA of its own) next to `clientCaFile` (the API
 * clients' CA). The CLI on "another machine" (no config, no PIN, no store: only --admin-url and
 * an operator certificate) lists keys, rotates a scope and adds a client; the audit log names the
 * certificate's subject. Refused (401, nothing changed): no certificate, an API client's
 * certificate (issued by the client CA, even one bound to a client), and a certificate of an
 * unknown CA. A TLS listener without operatorCaFile serves no admin route at all.
 */
import { strict as assert } from 'node:assert';
import { hostname } from 'node:os';
import { Agent, request } from 'node:https';
import { runKeywarden } from '../helpers/cli';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { createTestPki, type IssuedCert, type TestPki } from '../helpers/tls-certs';

describe('the admin API over TLS with operator certificates (e2e)', function () {
  this.timeout(180_000);
  let serverPki: TestPki;
  let operatorPki: TestPki;
  let otherPki: TestPki;
  let daemon: Daemon;
  let ops: IssuedCert;
  let apiClient: IssuedCert;
  let stranger: IssuedCert;

  /** The CLI as a remote operator: no config, no socket; only the daemon's URL and a certificate. */
  const remote = (cert: IssuedCert | null, args: string[]) =>
    runKeywarden(
      [
        '--admin-url',
        daemon.baseUrl,
        ...(cert ? ['--operator-cert', cert.certFile, '--operator-key', cert.keyFile] : []),
        '--admin-ca',
        serverPki.ca.certFile,
        ...args,
      ],
      // Nothing of the daemon's reaches this process: no config path, no PIN, no socket.
      { env: { KEYWARDEN_CONFIG: '/nonexistent/keywarden.yaml', KEYWARDEN_ADMIN_SOCKET: undefined } },
    );

  /** A raw admin request with (or without) a client certificate. */
  function post(
    path: string,
    body: unknown,
    cert: IssuedCert | null,
  ): Promise<{ status: number; code?: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        `${daemon.baseUrl}${path}`,
        {
          method: 'POST',
          ca: serverPki.ca.certPem,
          agent: false,
          headers: { 'content-type': 'application/json' },
          ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => {
            let code: string | undefined;
            try {
              code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
            } catch {
              code = undefined;
            }
            resolve({ status: res.statusCode ?? 0, ...(code ? { code } : {}) });
          });
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  }

  const keyCount = async () => {
    const r = await daemon.cli(['--json', 'keys', 'list']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as unknown[]).length;
  };

  before(async () => {
    serverPki = await createTestPki('server');
    operatorPki = await createTestPki('operators');
    otherPki = await createTestPki('other');
    const server = await serverPki.server();
    [ops, apiClient, stranger] = await Promise.all([
      operatorPki.client('ops-alice'),
      serverPki.client('api-bob'),
      otherPki.client('mallory'),
    ]);
    daemon = await startDaemon({
      scopes: [{ name: 'alpha' }],
      workers: 2,
      logLevel: 'info',
      tls: {
        certFile: server.certFile,
        keyFile: server.keyFile,
        clientCaFile: serverPki.ca.certFile,
        operatorCaFile: operatorPki.ca.certFile,
        trust: serverPki.ca.certPem,
      },
    });
    // api-bob is a real API client bound to its certificate: still no operator.
    const bound = await daemon.cli([
      'clients',
      'add',
      'bob',
      '--grant',
      'alpha:sign',
      '--cert',
      apiClient.certFile,
    ]);
    assert.equal(bound.code, 0, bound.stderr);
  });

  after(async () => {
    await daemon?.stop();
    for (const p of [serverPki, operatorPki, otherPki]) await p?.cleanup();
  });

  it('an operator certificate lists keys, rotates and adds a client from a machine with no config or PIN', async () => {
    const listed = await remote(ops, ['--json', 'keys', 'list', '--scope', 'alpha']);
    assert.equal(listed.code, 0, listed.stderr);
    const before = JSON.parse(listed.stdout) as { kid: string }[];
    assert.ok(before.length >= 1);

    const rotated = await remote(ops, ['--json', 'keys', 'rotate', '--scope', 'alpha']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const kid = (JSON.parse(rotated.stdout) as { kid: string }).kid;
    assert.ok(!before.some((k) => k.kid === kid), 'a new key');

    const added = await remote(ops, ['--json', 'clients', 'add', 'carol', '--grant', 'alpha:sign']);
    assert.equal(added.code, 0, added.stderr);
    assert.match((JSON.parse(added.stdout) as { secret: string }).secret, /.{20,}/);

    // The audit log names the certificate's subject (CN plus a public-key digest), proven by TLS.
    const tail = await daemon.cli(['--json', 'audit', 'tail', '--kid', kid, '--limit', '20']);
    assert.equal(tail.code, 0, tail.stderr);
    const created = (JSON.parse(tail.stdout) as { type: string; actor: string }[]).find(
      (r) => r.type === 'key.created',
    );
    assert.match(
      created?.actor ?? '',
      new RegExp(`^operator-certificate:ops-alice#[A-Za-z0-9_-]{16}@${hostname()}$`),
    );
    // So does the daemon's log, for each request.
    assert.match(
      daemon.output(),
      /"operator":"operator-certificate:ops-alice#[A-Za-z0-9_-]{16}@[^"]+","transport":"operator-certificate","op":"keys.rotate"/,
    );
  });

  it('refuses no certificate, an API client’s certificate and an unknown CA’s (401), changing nothing', async () => {
    const keys = await keyCount();
    for (const [what, cert] of [
      ['no certificate', null],
      ['an API client certificate (client CA, bound to a client)', apiClient],
      ['a certificate of an unknown CA', stranger],
    ] as const) {
      const raw = await post('/admin/v1/keys/rotate', { scope: 'alpha' }, cert);
      assert.equal(raw.status, 401, what);
      assert.equal(raw.code, 'UNAUTHENTICATED', what);
      const viaCli = await remote(cert, ['keys', 'rotate', '--scope', 'alpha']);
      assert.notEqual(viaCli.code, 0, what);
    }
    assert.equal(await keyCount(), keys, 'no key was made');
    // The CLI refuses half a remote setup before it sends anything.
    const noKey = await runKeywarden([
      '--admin-url',
      daemon.baseUrl,
      '--operator-cert',
      ops.certFile,
      'keys',
      'list',
    ]);
    assert.equal(noKey.code, 2, noKey.stderr);
    assert.match(noKey.stderr, /--operator-key/);
    const plain = await runKeywarden([
      '--admin-url',
      daemon.baseUrl.replace('https:', 'http:'),
      '--operator-cert',
      ops.certFile,
      '--operator-key',
      ops.keyFile,
      'keys',
      'list',
    ]);
    assert.equal(plain.code, 2, plain.stderr);
    assert.match(plain.stderr, /must be https/);
  });

  it('refuses a certificate of an intermediate CA under the operator CA: operator CAs issue operators directly', async () => {
    const keys = await keyCount();
    const chained = await operatorPki.intermediateClient('ops-sub');
    // The handshake accepts it (the chain leads to a CA the listener trusts): the route refuses it.
    const jwks = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${daemon.baseUrl}/scopes/alpha/.well-known/jwks.json`,
        { ca: serverPki.ca.certPem, cert: chained.certPem, key: chained.keyPem, agent: false },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(jwks, 200, 'the TLS handshake with the chain succeeds');
    for (const op of ['/admin/v1/keys/rotate', '/admin/v1/keys/list']) {
      const r = await post(op, op.endsWith('rotate') ? { scope: 'alpha' } : {}, chained);
      assert.equal(r.status, 401, op);
      assert.equal(r.code, 'UNAUTHENTICATED', op);
    }
    const viaCli = await remote(chained, ['keys', 'rotate', '--scope', 'alpha']);
    assert.notEqual(viaCli.code, 0, viaCli.stdout);
    // Past the handshake's chain check (the socket is authorized): refused by the direct-issuer rule.
    assert.match(viaCli.stderr, /UNAUTHENTICATED: this certificate is not an operator certificate/);
    assert.equal(await keyCount(), keys, 'no key was made');
  });

  it('a token an operator signs remotely is in the audit log with its jti and the operator', async () => {
    const signed = await remote(ops, [
      '--json',
      'sign',
      '--scope',
      'alpha',
      '--claims',
      '{"sub":"ceo","aud":"alpha-api"}',
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const { jti, kid } = JSON.parse(signed.stdout) as { jti: string; kid: string };
    const tail = await daemon.cli(['--json', 'audit', 'tail', '--type', 'token.signed', '--limit', '50']);
    assert.equal(tail.code, 0, tail.stderr);
    const record = (
      JSON.parse(tail.stdout) as { kid: string; actor: string; data: { jti: string; sub: string } }[]
    ).find((r) => r.data.jti === jti);
    assert.ok(record, 'the token is recorded');
    assert.equal(record.kid, kid);
    assert.equal(record.data.sub, 'ceo');
    assert.match(record.actor, /^operator-certificate:ops-alice#/);
  });

  it('operator and API client certificates that expire stop working on connections kept alive across their end', async () => {
    // Valid for a few seconds from now: the handshake accepts them, requests after their end must not.
    const end = new Date(Date.now() + 8_000);
    const stamp = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
    const validity = { notBefore: stamp(new Date(Date.now() - 60_000)), notAfter: stamp(end) };
    const [opBrief, apiBrief] = await Promise.all([
      operatorPki.client('ops-brief', validity),
      serverPki.client('api-brief', validity),
    ]);
    const bound = await daemon.cli([
      'clients',
      'add',
      'brief',
      '--grant',
      'alpha:sign',
      '--cert',
      apiBrief.certFile,
    ]);
    assert.equal(bound.code, 0, bound.stderr);
    const agentFor = (c: IssuedCert) =>
      new Agent({ keepAlive: true, maxSockets: 1, ca: serverPki.ca.certPem, cert: c.certPem, key: c.keyPem });
    const targets = [
      { agent: agentFor(opBrief), path: '/admin/v1/keys/list', body: {}, sockets: new Set<unknown>() },
      {
        agent: agentFor(apiBrief),
        path: '/v1/scopes/alpha/sign',
        body: { claims: { aud: 'alpha-api', sub: 'x' } },
        sockets: new Set<unknown>(),
      },
    ];
    const once = (t: (typeof targets)[number]) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          `${daemon.baseUrl}${t.path}`,
          { method: 'POST', agent: t.agent, headers: { 'content-type': 'application/json' } },
          (res) => {
            t.sockets.add(res.socket);
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(t.body));
      });
    try {
      for (const t of targets) assert.equal(await once(t), 200, t.path);
      while (Date.now() < end.getTime() + 1_500) {
        // Requests every half second keep each connection alive across the certificate's end.
        for (const t of targets) await once(t);
        await new Promise((r) => setTimeout(r, 500));
      }
      for (const t of targets) {
        assert.equal(await once(t), 401, `${t.path}: refused once the certificate has expired`);
        assert.equal(t.sockets.size, 1, `${t.path}: all on one kept-alive connection`);
      }
    } finally {
      for (const t of targets) t.agent.destroy();
    }
  });

  it('an operator certificate is no API client: it cannot sign', async () => {
    const r = await post('/v1/scopes/alpha/sign', { claims: { aud: 'alpha-api', sub: 'x' } }, ops);
    assert.equal(r.status, 401);
  });
});

describe('a TLS listener without operatorCaFile (e2e)', function () {
  this.timeout(120_000);
  let pki: TestPki;
  let daemon: Daemon;

  before(async () => {
    pki = await createTestPki('noop');
    const server = await pki.server();
    daemon = await startDaemon({
      scopes: [{ name: 'alpha' }],
      tls: {
        certFile: server.certFile,
        keyFile: server.keyFile,
        clientCaFile: pki.ca.certFile,
        trust: pki.ca.certPem,
      },
    });
  });

  after(async () => {
    await daemon?.stop();
    await pki?.cleanup();
  });

  it('serves no admin route, whatever certificate is presented', async () => {
    const client = await pki.client('anyone');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${daemon.baseUrl}/admin/v1/keys/list`,
        {
          method: 'POST',
          ca: pki.ca.certPem,
          cert: client.certPem,
          key: client.keyPem,
          agent: false,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    assert.equal(status, 404);
  });
});
