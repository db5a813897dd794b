/**
 * Certificate renewal by SIGHUP, end to end: a `keywarden serve --workers 2` with `server.tls`
 * gets a renewed certificate written over the configured paths and a SIGHUP. New connections
 * to every worker then get the new certificate, with zero failed requests while it happens (each
 * request on a fresh TLS connection, so handshakes straddle the switch). A renewal that does not
 * check out (a key of another certificate) is refused as a whole: the running certificate stays,
 * and the refusal is counted. Turning mutual TLS on is a restart-only change and is refused too.
 */
import { strict as assert } from 'node:assert';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { connect } from 'node:tls';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { createTestPki, type IssuedCert, type TestPki } from '../helpers/tls-certs';
import { until } from '../helpers/wait';

describe('TLS certificate renewal by SIGHUP (e2e, two workers)', function () {
  this.timeout(180_000);
  let pki: TestPki;
  let daemon: Daemon;
  let served: IssuedCert;

  /** The SHA-256 fingerprint of the certificate a new TLS connection gets, and the worker's slot. */
  function handshake(): Promise<string> {
    const port = Number(new URL(daemon.baseUrl).port);
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, ca: pki.ca.certPem, servername: 'localhost' });
      s.on('secureConnect', () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on('error', reject);
    });
  }

  /** GET on a fresh TLS connection; resolves with the status, or the error's code. */
  function get(path: string): Promise<number | string> {
    return new Promise((resolve) => {
      const req = request(`${daemon.baseUrl}${path}`, { ca: pki.ca.certPem, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      req.end();
    });
  }

  async function metric(name: string): Promise<number> {
    const text = await new Promise<string>((resolve, reject) => {
      const req = request(`${daemon.baseUrl}/metrics`, { ca: pki.ca.certPem, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.slice(name.length + 1)) : Number.NaN;
  }

  /** Both workers' certificates are `fingerprint`: many new connections, spread over the workers. */
  async function allServe(fingerprint: string): Promise<boolean> {
    const seen = await Promise.all(Array.from({ length: 16 }, () => handshake()));
    return seen.every((f) => f === fingerprint);
  }

  /** SIGHUP, then wait until the reload is counted as refused. */
  async function hangUpAndExpectRefusal(): Promise<void> {
    const refused = () => metric('keywarden_config_reloads_total{result="refused"}');
    const before = (await refused()) || 0;
    process.kill(daemon.pid, 'SIGHUP');
    await until('the reload refused', async () => ((await refused()) === before + 1 ? true : undefined), {
      ms: 30_000,
    });
  }

  const fingerprintOf = async (c: IssuedCert) =>
    new (await import('node:crypto')).X509Certificate(c.certPem).fingerprint256;

  before(async () => {
    pki = await createTestPki('reload');
    served = await pki.server('served');
    daemon = await startDaemon({
      scopes: [{ name: 'alpha' }],
      workers: 2,
      tls: { certFile: served.certFile, keyFile: served.keyFile, trust: pki.ca.certPem },
    });
  });

  after(async () => {
    await daemon?.stop();
    await pki?.cleanup();
  });

  it('serves a renewed certificate to new connections after SIGHUP, with zero failed requests', async () => {
    assert.ok(await allServe(await fingerprintOf(served)), 'the first certificate is served');
    const renewed = await pki.server('renewed');
    let stop = false;
    const failures: string[] = [];
    let ok = 0;
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const r = await get('/scopes/alpha/.well-known/jwks.json');
        if (r === 200) ok++;
        else failures.push(String(r));
      }
    });
    // Renewal as a certificate manager does it: new files at the same paths, then a reload.
    await copyFile(renewed.keyFile, served.keyFile);
    await copyFile(renewed.certFile, served.certFile);
    process.kill(daemon.pid, 'SIGHUP');
    const fingerprint = await fingerprintOf(renewed);
    await until(
      'every worker serving the renewed certificate',
      async () => (await allServe(fingerprint)) || undefined,
      {
        ms: 30_000,
      },
    );
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(failures, [], 'no request failed during the renewal');
    assert.ok(ok > 0, 'requests were answered during the renewal');
    assert.equal(await metric('keywarden_config_last_reload_successful'), 1);
  });

  it('refuses a renewal whose key is not the certificate’s, keeping the running certificate', async () => {
    const running = await handshake();
    const other = await pki.server('other');
    const keyBefore = await readFile(served.keyFile);
    await copyFile(other.keyFile, served.keyFile);
    try {
      await hangUpAndExpectRefusal();
      assert.equal(await metric('keywarden_config_last_reload_successful'), 0);
      assert.ok(await allServe(running), 'every worker still serves the running certificate');
      assert.equal(await get('/healthz'), 200);
    } finally {
      await writeFile(served.keyFile, keyBefore);
    }
  });

  it('refuses turning client certificates on by reload (restart only)', async () => {
    const doc = JSON.parse(await readFile(daemon.configPath, 'utf8')) as {
      server: { tls: Record<string, string> };
    };
    const original = JSON.stringify(doc, null, 2);
    doc.server.tls.clientCaFile = pki.ca.certFile;
    await writeFile(daemon.configPath, JSON.stringify(doc, null, 2));
    try {
      await hangUpAndExpectRefusal();
    } finally {
      await writeFile(daemon.configPath, original);
    }
  });
});
