/**
 * Certificates for TLS tests, made by the real `openssl` CLI as an operator would: a private CA,
 * server certificates with 127.0.0.1/localhost SANs, client certificates, and a few bad ones
 * (expired, not yet valid, a key of another certificate). Each PKI lives in its own temp dir.
 */
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr ?? err.message}`, { cause: e });
  }
}

/** A certificate and its key as files (and the PEM text of the certificate). */
export interface IssuedCert {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  /** base64url SHA-256 of the certificate's SubjectPublicKeyInfo (DER). */
  spkiSha256: string;
}

export interface TestPki {
  dir: string;
  /** The CA certificate. */
  ca: IssuedCert;
  /** A server certificate for 127.0.0.1, ::1 and localhost, issued by the CA. */
  server(name?: string, opts?: { days?: number; notBefore?: string; notAfter?: string }): Promise<IssuedCert>;
  /** A client certificate (CN=name, clientAuth) issued by the CA. */
  client(name: string, opts?: { notBefore?: string; notAfter?: string }): Promise<IssuedCert>;
  /**
   * A client certificate (CN=name, clientAuth) issued by an intermediate CA that the CA issued: its
   * certificate file holds the chain (the leaf, then the intermediate), as a client presents it.
   */
  intermediateClient(name: string): Promise<IssuedCert>;
  cleanup(): Promise<void>;
}

let serial = 1;

/** SPKI SHA-256 (base64url) of a PEM certificate, as keywarden binds clients by it. */
export function spkiSha256(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64url');
}

async function issued(dir: string, name: string): Promise<IssuedCert> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const certPem = await readFile(certFile, 'utf8');
  return {
    certFile,
    keyFile,
    certPem,
    keyPem: await readFile(keyFile, 'utf8'),
    spkiSha256: spkiSha256(certPem),
  };
}

/** Makes a private CA (EC P-256) in a fresh temp dir. */
export async function createTestPki(label = 'ca'): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'kw-tls-test-'));
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '30',
      '-subj',
      `/CN=keywarden test ${label}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const ca = await issued(dir, 'ca');

  async function sign(
    name: string,
    subject: string,
    ext: string,
    opts: { days?: number; notBefore?: string; notAfter?: string; issuer?: string } = {},
  ): Promise<IssuedCert> {
    await openssl(
      [
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        subject,
      ],
      dir,
    );
    await writeFile(join(dir, `${name}.ext`), ext);
    if (opts.notBefore || opts.notAfter) {
      // `openssl ca` is the one that takes explicit start and end dates.
      await writeFile(join(dir, 'index.txt'), '');
      await writeFile(
        join(dir, 'ca.cnf'),
        [
          '[ca]',
          'default_ca = test',
          '[test]',
          `dir = ${dir}`,
          'database = $dir/index.txt',
          'new_certs_dir = $dir',
          'certificate = $dir/ca.crt',
          'private_key = $dir/ca.key',
          'default_md = sha256',
          'rand_serial = yes',
          'policy = any',
          'unique_subject = no',
          'copy_extensions = none',
          '[any]',
          'commonName = supplied',
        ].join('\n'),
      );
      await openssl(
        [
          'ca',
          '-batch',
          '-config',
          'ca.cnf',
          '-in',
          `${name}.csr`,
          '-out',
          `${name}.crt`,
          '-notext',
          '-extfile',
          `${name}.ext`,
          '-startdate',
          opts.notBefore ?? '20200101000000Z',
          '-enddate',
          opts.notAfter ?? '20991231000000Z',
        ],
        dir,
      );
    } else {
      await openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          `${opts.issuer ?? 'ca'}.crt`,
          '-CAkey',
          `${opts.issuer ?? 'ca'}.key`,
          '-set_serial',
          String(serial++),
          '-days',
          String(opts.days ?? 7),
          '-out',
          `${name}.crt`,
          '-extfile',
          `${name}.ext`,
        ],
        dir,
      );
    }
    return issued(dir, name);
  }

  return {
    dir,
    ca,
    server: (name = 'server', opts = {}) =>
      sign(
        name,
        '/CN=localhost',
        'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' +
          'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n',
        opts,
      ),
    client: (name, opts = {}) =>
      sign(
        name,
        `/CN=${name}`,
        'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
        opts,
      ),
    async intermediateClient(name) {
      const ica = await sign(
        `${name}-ica`,
        `/CN=${name} intermediate CA`,
        'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n',
      );
      const leaf = await sign(
        name,
        `/CN=${name}`,
        'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
        { issuer: `${name}-ica` },
      );
      const certFile = join(dir, `${name}-chain.crt`);
      const certPem = leaf.certPem + ica.certPem;
      await writeFile(certFile, certPem);
      return { ...leaf, certFile, certPem };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
