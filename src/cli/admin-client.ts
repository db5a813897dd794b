import * as http from 'node:http';
import * as https from 'node:https';
import { adminPath, operatorClaimHeaders } from '../admin';
import { ERROR_CODES, KeywardenError, type ErrorCode } from '../policy/errors';

/**
 * Where the admin API is: the daemon's unix socket, or its TLS listener with an operator
 * certificate (server.tls.operatorCaFile) for an operator on another machine.
 */
export type AdminTarget =
  { kind: 'socket'; path: string } | { kind: 'https'; url: string; cert: Buffer; key: Buffer; ca?: Buffer };

/** Why the daemon could not be reached, and what to do instead. Never a silent fallback. */
function unreachable(target: AdminTarget, e: NodeJS.ErrnoException): KeywardenError {
  const code = e.code ?? e.message;
  if (target.kind === 'https') {
    return new KeywardenError(
      'DAEMON_UNREACHABLE',
      `cannot reach the admin API at ${target.url} (${code}): is the daemon running there with ` +
        'server.tls.operatorCaFile, and does --admin-ca name the CA of its server certificate?',
      { cause: e },
    );
  }
  const socketPath = target.path;
  if (code === 'EACCES' || code === 'EPERM') {
    return new KeywardenError(
      'DAEMON_UNREACHABLE',
      `permission denied on the admin socket ${socketPath}: this user is not in the socket's group ` +
        "(admin.socket.group in the daemon's config; docs/operations.md). --local works on the store and " +
        'HSM directly instead, if this user holds their credentials',
      { cause: e },
    );
  }
  if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') {
    return new KeywardenError(
      'DAEMON_UNREACHABLE',
      `no keywarden daemon answers on the admin socket ${socketPath} (${code}): is \`keywarden serve\` ` +
        'running with this config? To work on the store and HSM directly instead, run the command again ' +
        'with --local',
      { cause: e },
    );
  }
  return new KeywardenError(
    'DAEMON_UNREACHABLE',
    `lost the connection to the daemon on ${socketPath} (${code}); a change may or may not have been ` +
      'applied: check `keywarden audit tail`',
    { cause: e },
  );
}

const isErrorCode = (c: unknown): c is ErrorCode =>
  typeof c === 'string' && (ERROR_CODES as readonly string[]).includes(c);

/**
 * Runs an admin operation on the daemon (`POST /admin/v1/...`): over its unix socket, naming this
 * process's OS user in the request, or over HTTPS with an operator certificate, which names the
 * operator itself. The daemon's error comes back as the same KeywardenError (so the same exit
 * code) the command would raise under --local.
 */
export function callAdmin<R>(target: AdminTarget, operation: string, input: unknown): Promise<R> {
  const body = JSON.stringify(input);
  const headers = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  return new Promise<R>((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => reject(unreachable(target, e)));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          reject(
            new KeywardenError(
              'INTERNAL',
              `the daemon answered ${res.statusCode} with a body that is not JSON`,
            ),
          );
          return;
        }
        const status = res.statusCode ?? 500;
        if (status >= 200 && status < 300) {
          resolve(parsed as R);
          return;
        }
        const err = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
        const message = typeof err?.message === 'string' ? err.message : `HTTP ${status}`;
        reject(new KeywardenError(isErrorCode(err?.code) ? err.code : 'INTERNAL', message));
      });
    };
    const req =
      target.kind === 'socket'
        ? http.request(
            {
              socketPath: target.path,
              agent: false,
              method: 'POST',
              path: adminPath(operation),
              headers: { ...headers, ...operatorClaimHeaders() },
            },
            onResponse,
          )
        : https.request(
            new URL(adminPath(operation), target.url),
            {
              agent: false,
              method: 'POST',
              headers,
              cert: target.cert,
              key: target.key,
              ...(target.ca ? { ca: target.ca } : {}),
            },
            onResponse,
          );
    req.on('error', (e: NodeJS.ErrnoException) => reject(unreachable(target, e)));
    req.end(body);
  });
}
