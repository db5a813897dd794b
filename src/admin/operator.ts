import * as os from 'node:os';
import { KeywardenError } from '../policy/errors';

/**
 * How an operator reached keywarden:
 * - `local`: the CLI with `--local`, working on the store and HSM itself (break-glass, init, tests);
 * - `admin-socket`: the daemon's unix socket (the socket's file permissions admitted the caller);
 * - `operator-certificate`: HTTPS with an operator client certificate (not built yet).
 */
export type OperatorTransport = 'local' | 'admin-socket' | 'operator-certificate';

/**
 * An operator as far as the transport lets keywarden know them (docs/operations.md "Who the
 * audit log names"). `proof` says whether `name` is established or only claimed.
 */
export interface Operator {
  transport: OperatorTransport;
  /** The OS user name (local, socket) or the certificate's subject. */
  name: string;
  uid: number | null;
  /** The host the operator acted on (the daemon's host for the socket). */
  host: string;
  /**
   * `process`: the OS account this process runs as (local); `claimed`: sent by the client and not
   * checked (the socket: Node cannot read SO_PEERCRED); `certificate`: a verified client certificate.
   */
  proof: 'process' | 'claimed' | 'certificate';
}

/** The request headers in which the CLI names its OS user to the admin socket (a claim). */
export const OPERATOR_HEADERS = { user: 'x-keywarden-os-user', uid: 'x-keywarden-os-uid' } as const;

const USER_RE = /^[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}$/;
const UID_RE = /^[0-9]{1,10}$/;

/**
 * The actor string the audit log records for an operator action: transport, name, uid, whether
 * the name is only claimed, and host, e.g. `admin-socket:alice(uid=1001,claimed)@kw1`.
 */
export function operatorActor(op: Operator): string {
  const notes = [
    ...(op.uid !== null ? [`uid=${op.uid}`] : []),
    ...(op.proof === 'claimed' ? ['claimed'] : []),
  ];
  return `${op.transport}:${op.name}${notes.length > 0 ? `(${notes.join(',')})` : ''}@${op.host}`;
}

/** The operator running this process (the CLI under `--local`): its OS account. */
export function localOperator(): Operator {
  let name = 'unknown';
  try {
    name = os.userInfo().username;
  } catch {
    // Containers may run with a uid that has no passwd entry.
  }
  return { transport: 'local', name, uid: process.getuid?.() ?? null, host: os.hostname(), proof: 'process' };
}

/** The headers the CLI sends to the admin socket: who it runs as (the daemon records it as claimed). */
export function operatorClaimHeaders(): Record<string, string> {
  const me = localOperator();
  return {
    ...(USER_RE.test(me.name) ? { [OPERATOR_HEADERS.user]: me.name } : {}),
    ...(me.uid !== null ? { [OPERATOR_HEADERS.uid]: String(me.uid) } : {}),
  };
}

/**
 * The operator of a request on the admin socket: the OS user and uid the client claims (absent:
 * `unknown`), on this host. A malformed claim is refused rather than recorded.
 */
export function socketOperator(headers: Readonly<Record<string, string | string[] | undefined>>): Operator {
  const user = headers[OPERATOR_HEADERS.user];
  const uid = headers[OPERATOR_HEADERS.uid];
  if (user !== undefined && (typeof user !== 'string' || !USER_RE.test(user))) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      `${OPERATOR_HEADERS.user} must be a user name (letters, digits, . _ @ -, at most 64)`,
    );
  }
  if (uid !== undefined && (typeof uid !== 'string' || !UID_RE.test(uid))) {
    throw new KeywardenError('REQUEST_INVALID', `${OPERATOR_HEADERS.uid} must be a numeric uid`);
  }
  return {
    transport: 'admin-socket',
    name: user ?? 'unknown',
    uid: uid === undefined ? null : Number(uid),
    host: os.hostname(),
    proof: 'claimed',
  };
}
