import { createHash, type X509Certificate } from 'node:crypto';
import * as os from 'node:os';
import { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { Operator } from '../admin';
import { issuedByOneOf } from '../config/tls-options';
import { KeywardenError } from '../policy/errors';
import type { OperatorResolver } from './admin-routes';

/** A subject's CN (or the whole subject) reduced to what an audit actor may carry. */
function subjectName(cert: X509Certificate): string {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? cert.subject.replace(/\n/g, ',');
  const safe = cn.replace(/[^A-Za-z0-9._@-]/g, '_').slice(0, 64);
  return safe.length > 0 ? safe : 'unnamed';
}

/**
 * The operator of an admin request on the TLS listener (server.tls.operatorCaFile): the TLS
 * handshake verified the client certificate's chain against the listener's CAs, and one of the
 * operator CAs must have issued it directly, so an API client's certificate (another CA) is
 * never an operator. The name is the certificate's CN plus the first 16 characters of its
 * public key's SHA-256 (base64url), so two certificates with one CN stay apart in the audit log.
 */
export function certificateOperatorResolver(authorities: readonly X509Certificate[]): OperatorResolver {
  return (req: FastifyRequest): Operator => {
    const socket = req.raw.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) {
      throw new KeywardenError(
        'UNAUTHENTICATED',
        'the admin API on this listener needs an operator certificate issued by server.tls.operatorCaFile',
      );
    }
    const cert = socket.getPeerX509Certificate();
    if (!cert || !issuedByOneOf(cert, authorities)) {
      throw new KeywardenError(
        'UNAUTHENTICATED',
        'this certificate is not an operator certificate (not issued by server.tls.operatorCaFile)',
      );
    }
    const spki = createHash('sha256')
      .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64url');
    return {
      transport: 'operator-certificate',
      name: `${subjectName(cert)}#${spki.slice(0, 16)}`,
      uid: null,
      host: os.hostname(),
      proof: 'certificate',
    };
  };
}
