import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A throw-away CA and a server certificate it issued for 127.0.0.1 / localhost. */
export interface TestTlsMaterial {
  /** PEM of the test CA: what a client must trust. */
  caPem: string;
  /** Server certificate chain (leaf) and its private key, PEM, held in memory only. */
  certPem: string;
  keyPem: string;
}

let cached: Promise<TestTlsMaterial> | undefined;

/**
 * Makes (once per process) a private CA and a server certificate with SANs IP:127.0.0.1 and
 * DNS:localhost using the openssl CLI. Keys are generated at test time, live in a temp directory
 * only for the seconds openssl needs them, and are never written anywhere in the repository.
 * A CA plus leaf (rather than one self-signed leaf) mirrors what a private endpoint behind an
 * enterprise CA looks like, which is exactly the case the backend's `tls.caFile` option serves.
 */
export function testTlsMaterial(): Promise<TestTlsMaterial> {
  cached ??= makeTlsMaterial();
  return cached;
}

async function makeTlsMaterial(): Promise<TestTlsMaterial> {
  const dir = await mkdtemp(join(tmpdir(), 'kw-kv-tls-'));
  try {
    const p = (f: string): string => join(dir, f);
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      p('ca.key'),
      '-out',
      p('ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=keywarden test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await run('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      p('server.key'),
      '-out',
      p('server.csr'),
      '-subj',
      '/CN=localhost',
    ]);
    await writeFile(
      p('server.ext'),
      [
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth',
      ].join('\n'),
    );
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      p('server.csr'),
      '-CA',
      p('ca.pem'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      p('server.ext'),
      '-out',
      p('server.pem'),
    ]);
    const [caPem, certPem, keyPem] = await Promise.all([
      readFile(p('ca.pem'), 'utf8'),
      readFile(p('server.pem'), 'utf8'),
      readFile(p('server.key'), 'utf8'),
    ]);
    return { caPem, certPem, keyPem };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
