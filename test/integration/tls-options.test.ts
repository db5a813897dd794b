/**
 * server.tls files as the daemon reads them (src/config/tls-options.ts), with certificates made by
 * openssl: a good chain loads; every way the files can be wrong is one CONFIG_INVALID problem that
 * names its field, all of them reported at once; and `clients add --cert`'s issuer check.
 */
import { strict as assert } from 'node:assert';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer as createTlsServer, connect } from 'node:tls';
import { join } from 'node:path';
import { issuedByClientCa, tlsServerOptions } from '../../src/config/tls-options';
import { ConfigInvalidError, type ConfigProblem } from '../../src/policy/errors';
import type { TlsConfig } from '../../src/policy/scope';
import { createTestPki, type IssuedCert, type TestPki } from '../helpers/tls-certs';

function options(tls: TlsConfig) {
  return tlsServerOptions({ source: 'test.yaml', server: { tls } as never }, new Date());
}

function problems(tls: TlsConfig): ConfigProblem[] {
  try {
    options(tls);
  } catch (e) {
    assert.ok(e instanceof ConfigInvalidError, String(e));
    assert.equal(e.code, 'CONFIG_INVALID');
    return [...e.problems];
  }
  assert.fail('the TLS files were accepted');
}

describe('server.tls files (tlsServerOptions)', function () {
  this.timeout(60_000);
  let pki: TestPki;
  let other: TestPki;
  let server: IssuedCert;
  let alice: IssuedCert;

  before(async () => {
    pki = await createTestPki('options');
    other = await createTestPki('other');
    server = await pki.server();
    alice = await pki.client('alice');
  });
  after(async () => {
    await pki?.cleanup();
    await other?.cleanup();
  });

  it('is null without server.tls', () => {
    assert.equal(tlsServerOptions({ source: 't', server: {} as never }, new Date()), null);
  });

  it('loads a certificate with its chain and key; a client CA turns client certificates on', async () => {
    const chainFile = join(pki.dir, 'chain.pem');
    await writeFile(chainFile, server.certPem + pki.ca.certPem);
    const plain = options({ certFile: chainFile, keyFile: server.keyFile, minVersion: 'TLSv1.2' });
    assert.ok(plain);
    assert.equal(plain.requestCert, false);
    assert.equal(plain.ca, undefined);
    assert.equal(plain.minVersion, 'TLSv1.2');
    const mtls = options({
      certFile: server.certFile,
      keyFile: server.keyFile,
      clientCaFile: pki.ca.certFile,
      minVersion: 'TLSv1.3',
    });
    assert.equal(mtls?.requestCert, true);
    assert.equal(mtls?.rejectUnauthorized, false);
    assert.deepEqual(mtls?.ca, await readFile(pki.ca.certFile));

    // What it returns is what node:tls serves with: a handshake trusting the CA succeeds.
    const srv = createTlsServer(plain, (s) => s.end());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      const protocol = await new Promise<string | null>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port, ca: pki.ca.certPem, servername: 'localhost' }, () => {
          resolve(s.getProtocol());
          s.destroy();
        });
        s.on('error', reject);
      });
      assert.match(String(protocol), /^TLSv1\.[23]$/);
    } finally {
      srv.close();
    }
  });

  it('names a missing file and one that is not a file', async () => {
    const ps = problems({
      certFile: join(pki.dir, 'missing.crt'),
      keyFile: pki.dir,
      minVersion: 'TLSv1.2',
    });
    assert.deepEqual(
      ps.map((p) => p.path),
      ['server.tls.certFile', 'server.tls.keyFile'],
    );
    assert.match(ps[0]!.message, /no such file/);
  });

  it('refuses a key that is not the certificate’s, and says so', () => {
    const [p, ...rest] = problems({
      certFile: server.certFile,
      keyFile: alice.keyFile,
      minVersion: 'TLSv1.2',
    });
    assert.deepEqual(rest, []);
    assert.equal(p!.path, 'server.tls.keyFile');
    assert.match(p!.message, /is not the private key of the certificate/);
  });

  it('refuses an expired certificate and one not yet valid', async () => {
    const expired = await pki.server('expired', {
      notBefore: '20200101000000Z',
      notAfter: '20210101000000Z',
    });
    const [e] = problems({ certFile: expired.certFile, keyFile: expired.keyFile, minVersion: 'TLSv1.2' });
    assert.equal(e!.path, 'server.tls.certFile');
    assert.match(e!.message, /expired on 2021-01-01/);
    const future = await pki.server('future', { notBefore: '20980101000000Z', notAfter: '20990101000000Z' });
    const [f] = problems({ certFile: future.certFile, keyFile: future.keyFile, minVersion: 'TLSv1.2' });
    assert.match(f!.message, /is not valid before 2098-01-01/);
  });

  it('refuses a chain out of order, PEM without a certificate or key, and an encrypted key', async () => {
    const reversed = join(pki.dir, 'reversed.pem');
    await writeFile(reversed, pki.ca.certPem + server.certPem);
    const encrypted = join(pki.dir, 'encrypted.key');
    await writeFile(
      encrypted,
      '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgAAAAAAAAAAAICCAAw\n-----END ENCRYPTED PRIVATE KEY-----\n',
    );
    const order = problems({ certFile: reversed, keyFile: server.keyFile, minVersion: 'TLSv1.2' });
    assert.ok(order.some((p) => p.path === 'server.tls.certFile' && /did not issue/.test(p.message)));
    const noPem = problems({ certFile: server.keyFile, keyFile: server.certFile, minVersion: 'TLSv1.2' });
    assert.deepEqual(
      noPem.map((p) => p.path),
      ['server.tls.certFile', 'server.tls.keyFile'],
    );
    const [enc] = problems({ certFile: server.certFile, keyFile: encrypted, minVersion: 'TLSv1.2' });
    assert.match(enc!.message, /encrypted/);
  });

  it('refuses a client CA file holding a certificate that is not a CA', () => {
    const [p] = problems({
      certFile: server.certFile,
      keyFile: server.keyFile,
      clientCaFile: alice.certFile,
      minVersion: 'TLSv1.2',
    });
    assert.equal(p!.path, 'server.tls.clientCaFile');
    assert.match(p!.message, /is not a CA certificate/);
  });

  it('reports every problem at once', async () => {
    const dir = join(pki.dir, 'all');
    await mkdir(dir, { recursive: true });
    const expired = await pki.server('old', { notBefore: '20200101000000Z', notAfter: '20210101000000Z' });
    const ps = problems({
      certFile: expired.certFile,
      keyFile: alice.keyFile,
      clientCaFile: join(dir, 'none.pem'),
      minVersion: 'TLSv1.2',
    });
    assert.deepEqual(ps.map((p) => p.path).sort(), [
      'server.tls.certFile',
      'server.tls.clientCaFile',
      'server.tls.keyFile',
    ]);
  });

  it('issuedByClientCa: true for the client CA’s certificates, false for another CA’s, null without a client CA', async () => {
    const tls = (clientCaFile?: string) =>
      ({
        server: {
          tls: {
            certFile: server.certFile,
            keyFile: server.keyFile,
            minVersion: 'TLSv1.2',
            ...(clientCaFile ? { clientCaFile } : {}),
          },
        },
      }) as never;
    const mallory = await other.client('mallory');
    assert.equal(issuedByClientCa(tls(pki.ca.certFile), alice.certPem), true);
    assert.equal(issuedByClientCa(tls(pki.ca.certFile), mallory.certPem), false);
    assert.equal(issuedByClientCa(tls(), alice.certPem), null);
  });
});
