import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { certificateSpkiSha256 } from '../lifecycle';

/** The certificate a TLS client presented on its connection (mutual TLS). */
export interface PeerCertificate {
  /** base64url SHA-256 of its SubjectPublicKeyInfo: what an API client is bound to. */
  spkiSha256: string;
  /**
   * True when a CA of server.tls.clientCaFile issued it and it is valid (checked by TLS during
   * the handshake). A certificate that is not is never looked up.
   */
  authorized: boolean;
  /** Why it is not authorized (OpenSSL's reason, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE). */
  problem: string | null;
}

/**
 * A connection's answer, computed once: the listener turns renegotiation off on every connection
 * (src/http/server.ts), so the certificate a connection presented cannot change under it.
 */
const answers = new WeakMap<TLSSocket, PeerCertificate | null>();

/**
 * The client certificate of the request's connection, or null: plain HTTP, or a TLS client that
 * sent none.
 */
export function peerCertificate(req: IncomingMessage): PeerCertificate | null {
  const socket = req.socket as TLSSocket;
  if (socket.encrypted !== true || typeof socket.getPeerCertificate !== 'function') return null;
  const known = answers.get(socket);
  if (known !== undefined) return known;
  const answer = readPeerCertificate(socket);
  answers.set(socket, answer);
  return answer;
}

function readPeerCertificate(socket: TLSSocket): PeerCertificate | null {
  // An empty object when the client sent no certificate.
  const presented = socket.getPeerCertificate(false) as { raw?: Buffer } | null;
  if (!presented?.raw) return null;
  let spkiSha256: string;
  try {
    spkiSha256 = certificateSpkiSha256(new X509Certificate(presented.raw));
  } catch {
    return null;
  }
  const problem = socket.authorizationError;
  return {
    spkiSha256,
    authorized: socket.authorized === true,
    problem: problem === null || problem === undefined ? null : String(problem),
  };
}
