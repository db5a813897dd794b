/**
 * The operator commands, implemented once (docs/api.md "Admin API"): the admin API's routes
 * (src/http/admin-routes.ts) and the CLI (`--local`, src/cli/) both run these on the use-case
 * facade. Adapters import this module; it imports the facade and policy/ only.
 */
import type { AnyAdminOperation } from './operation';
import { auditCheckpoint, auditPrune, auditTail, auditVerify } from './audit-operations';
import {
  clientsAdd,
  clientsAddCertificate,
  clientsList,
  clientsRemove,
  clientsRotateSecret,
  clientsSeal,
  clientsShow,
} from './client-operations';
import { hsmCheck, hsmStatusOperation } from './hsm-operations';
import { keysList, keysRevoke, keysRotate, keysShow, keysVerify } from './key-operations';
import { scopesJwks, scopesPlan, scopesShow } from './scope-operations';
import { tokensSign, tokensVerify } from './token-operations';

export * from './audit-operations';
export * from './client-operations';
export * from './hsm-operations';
export * from './key-operations';
export * from './scope-operations';
export * from './token-operations';
export { executeOperation, type AdminOperation, type AnyAdminOperation } from './operation';
export {
  localOperator,
  operatorActor,
  operatorClaimHeaders,
  socketOperator,
  OPERATOR_HEADERS,
  type Operator,
  type OperatorTransport,
} from './operator';
export { toWire, type Wire } from './wire';

/** Every admin operation: one route each on the admin API. */
export const ADMIN_OPERATIONS: readonly AnyAdminOperation[] = [
  scopesShow,
  scopesJwks,
  scopesPlan,
  keysList,
  keysShow,
  keysVerify,
  keysRotate,
  keysRevoke,
  tokensSign,
  tokensVerify,
  clientsAdd,
  clientsAddCertificate,
  clientsList,
  clientsShow,
  clientsRemove,
  clientsRotateSecret,
  clientsSeal,
  auditTail,
  auditVerify,
  auditCheckpoint,
  auditPrune,
  hsmStatusOperation,
  hsmCheck,
] as unknown as readonly AnyAdminOperation[];

/** The admin API path of an operation: `keys.rotate` -> `/admin/v1/keys/rotate`. */
export function adminPath(name: string): string {
  return `/admin/v1/${name.replace('.', '/')}`;
}
