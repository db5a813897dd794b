import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import { ConfigInvalidError, KeywardenError, type ConfigProblem } from '../policy/errors';
import type { KeywardenConfig, TlsConfig } from '../policy/scope';

/**
 * What the HTTPS listener is made with, and what `server.setSecureContext()` takes on a reload:
 * the secure context (key, certificate chain, client CAs, lowest version) plus whether the
 * listener asks for client certificates.
 */
export interface TlsServerOptions extends SecureContextOptions {
  key: Buffer;
  cert: Buffer;
  /** The client CAs (server.tls.clientCaFile); absent without mTLS. */
  ca?: Buffer;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** True with a client CA: every handshake asks for a client certificate (none is fine). */
  requestCert: boolean;
  /**
   * Always false: the JWKS, discovery and health routes are public, so a connection without a
   * certificate, or with one no client CA issued, is accepted; the token routes then refuse it
   * (401), because `socket.authorized` is false.
   */
  rejectUnauthorized: false;
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads and checks `server.tls` (config -> TLS options): the one place the listener's
 * certificate, key and client CAs are loaded, at start and, for a reload, before
 * `server.setSecureContext()`. Every problem is reported at once (CONFIG_INVALID, exit 3), each
 * naming its field: a file that is missing or unreadable, PEM that does not parse, a key that does
 * not belong to the certificate, a chain out of order, a certificate not yet valid or expired at
 * `now`, a client CA file holding something that is not a CA. Null when TLS is off.
 */
export function tlsServerOptions(
  config: Pick<KeywardenConfig, 'source' | 'server'>,
  now: Date,
): TlsServerOptions | null {
  const tls = config.server.tls;
  if (!tls) return null;
  const problems: ConfigProblem[] = [];
  const problem = (field: keyof TlsConfig, message: string) =>
    problems.push({ path: `server.tls.${field}`, message });

  const certPem = readPem(tls.certFile, 'certFile', problem);
  const keyPem = readPem(tls.keyFile, 'keyFile', problem);
  const caPem = tls.clientCaFile === undefined ? null : readPem(tls.clientCaFile, 'clientCaFile', problem);

  const chain = certPem ? parseCertificates(certPem, tls.certFile, 'certFile', problem) : [];
  if (chain.length > 0) checkChain(chain, tls.certFile, now, problem);
  const key = keyPem ? parsePrivateKey(keyPem, tls.keyFile, problem) : null;
  const leaf = chain[0];
  if (leaf && key && !leaf.checkPrivateKey(key)) {
    problem(
      'keyFile',
      `${tls.keyFile} is not the private key of the certificate in ${tls.certFile} (subject ${oneLine(leaf.subject)})`,
    );
  }
  if (caPem && tls.clientCaFile !== undefined)
    checkCas(caPem, tls.clientCaFile, 'clientCaFile', now, problem);
  const operatorPem =
    tls.operatorCaFile === undefined ? null : readPem(tls.operatorCaFile, 'operatorCaFile', problem);
  if (operatorPem && tls.operatorCaFile !== undefined)
    checkCas(operatorPem, tls.operatorCaFile, 'operatorCaFile', now, problem);
  if (problems.length > 0) throw new ConfigInvalidError(config.source, problems);
  // One trust list for the handshake: API clients' CAs and operators' CAs. Which of them issued a
  // certificate is told apart afterwards (the token routes by binding, the admin routes by issuer).
  const cas = [caPem, operatorPem].filter((b): b is Buffer => b !== null);
  return {
    key: keyPem!,
    cert: certPem!,
    ...(cas.length > 0
      ? { ca: Buffer.concat(cas.map((b) => Buffer.from(`${b.toString('utf8').trimEnd()}\n`))) }
      : {}),
    minVersion: tls.minVersion,
    requestCert: cas.length > 0,
    rejectUnauthorized: false,
  };
}

/** Every certificate of a CA file is a CA, valid at `now`. */
function checkCas(
  pem: Buffer,
  file: string,
  field: 'clientCaFile' | 'operatorCaFile',
  now: Date,
  problem: (field: keyof TlsConfig, message: string) => void,
): void {
  for (const ca of parseCertificates(pem, file, field, problem)) {
    if (!ca.ca) {
      problem(field, `${file}: ${oneLine(ca.subject)} is not a CA certificate (basicConstraints CA:FALSE)`);
    }
    if (new Date(ca.validTo) <= now) {
      problem(field, `${file}: CA ${oneLine(ca.subject)} expired on ${iso(ca.validTo)}`);
    }
  }
}

/**
 * The operator CAs of server.tls.operatorCaFile (checked by tlsServerOptions first), or null when
 * the admin API is not offered on the TLS listener.
 */
export function operatorAuthorities(config: Pick<KeywardenConfig, 'server'>): X509Certificate[] | null {
  const file = config.server.tls?.operatorCaFile;
  if (file === undefined) return null;
  return (fs.readFileSync(file, 'utf8').match(PEM_CERT_RE) ?? []).map((b) => new X509Certificate(b));
}

/** Whether one of `authorities` issued `cert` directly (its issuer, and its signature verifies). */
export function issuedByOneOf(cert: X509Certificate, authorities: readonly X509Certificate[]): boolean {
  return authorities.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
}

function readPem(
  file: string,
  field: keyof TlsConfig,
  problem: (field: keyof TlsConfig, message: string) => void,
): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied (the daemon reads it as its own user)'
          : (e as Error).message;
    problem(field, `cannot read ${file}: ${why}`);
    return null;
  }
}

function parseCertificates(
  pem: Buffer,
  file: string,
  field: keyof TlsConfig,
  problem: (field: keyof TlsConfig, message: string) => void,
): X509Certificate[] {
  const blocks = pem.toString('utf8').match(PEM_CERT_RE) ?? [];
  if (blocks.length === 0) {
    problem(field, `${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    return [];
  }
  const out: X509Certificate[] = [];
  blocks.forEach((block, i) => {
    try {
      out.push(new X509Certificate(block));
    } catch (e) {
      problem(field, `${file}: certificate ${i + 1} does not parse: ${(e as Error).message}`);
    }
  });
  return out.length === blocks.length ? out : [];
}

/** The server certificate first, each next one its issuer; all valid at `now`. */
function checkChain(
  chain: readonly X509Certificate[],
  file: string,
  now: Date,
  problem: (field: keyof TlsConfig, message: string) => void,
): void {
  chain.forEach((c, i) => {
    const what = i === 0 ? 'the certificate' : `chain certificate ${i + 1}`;
    if (new Date(c.validFrom) > now) {
      problem('certFile', `${file}: ${what} (${oneLine(c.subject)}) is not valid before ${iso(c.validFrom)}`);
    }
    if (new Date(c.validTo) <= now) {
      problem('certFile', `${file}: ${what} (${oneLine(c.subject)}) expired on ${iso(c.validTo)}`);
    }
    const next = chain[i + 1];
    if (next && !c.checkIssued(next)) {
      problem(
        'certFile',
        `${file}: certificate ${i + 2} (${oneLine(next.subject)}) did not issue certificate ${i + 1}: ` +
          'put the server certificate first, then each issuer',
      );
    }
  });
}

function parsePrivateKey(
  pem: Buffer,
  file: string,
  problem: (field: keyof TlsConfig, message: string) => void,
): KeyObject | null {
  const text = pem.toString('utf8');
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    problem(
      'keyFile',
      `${file} is encrypted; keywarden takes an unencrypted key protected by file permissions`,
    );
    return null;
  }
  try {
    return createPrivateKey(pem);
  } catch (e) {
    problem('keyFile', `${file} holds no PEM private key: ${(e as Error).message}`);
    return null;
  }
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

function iso(openssl: string): string {
  const d = new Date(openssl);
  return Number.isNaN(d.getTime()) ? openssl : d.toISOString();
}

/**
 * Whether a CA certificate in server.tls.clientCaFile issued `certificatePem` (its issuer is in the
 * file and its signature verifies with that CA's key); null when no client CA is configured.
 * `clients add --cert` refuses a certificate the listener would never accept. The file holds the
 * issuer itself (an intermediate CA included), as the listener checks chains against it.
 */
export function issuedByClientCa(
  config: Pick<KeywardenConfig, 'server'>,
  certificatePem: string,
): boolean | null {
  const file = config.server.tls?.clientCaFile;
  if (file === undefined) return null;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new KeywardenError(
      'CONFIG_INVALID',
      `server.tls.clientCaFile: cannot read ${file}: ${(e as Error).message}`,
      { cause: e },
    );
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certificatePem);
  } catch (e) {
    throw new KeywardenError('REQUEST_INVALID', `the certificate does not parse: ${(e as Error).message}`, {
      cause: e,
    });
  }
  for (const block of text.match(PEM_CERT_RE) ?? []) {
    let ca: X509Certificate;
    try {
      ca = new X509Certificate(block);
    } catch {
      continue;
    }
    if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) return true;
  }
  return false;
}
