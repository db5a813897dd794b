import { KeywardenError } from '../policy/errors';
import type { BackendConfig } from '../policy/scope';
import { azureBackendType } from './azure-keyvault/type';
import type { BackendType } from './backend-type';
import type { KeyBackend } from './key-backend';
import { pkcs11BackendType } from './pkcs11/type';

/**
 * Every backend type keywarden can use: one line each. Config validation takes their rules,
 * `openBackend` their openers, `hsm status` their descriptions.
 */
export const BACKEND_TYPES: readonly BackendType[] = [
  pkcs11BackendType as unknown as BackendType,
  azureBackendType as unknown as BackendType,
];

/** The registered type of a configured backend. */
export function backendType(type: string): BackendType {
  const t = BACKEND_TYPES.find((x) => x.type === type);
  if (!t) {
    throw new KeywardenError(
      'CONFIG_INVALID',
      `unknown backend type "${type}" (known: ${BACKEND_TYPES.map((x) => x.type).join(', ')})`,
    );
  }
  return t;
}

/** Opens a configured backend with its type's opener. */
export function openBackend(config: BackendConfig): Promise<KeyBackend> {
  return backendType(config.type).open(config);
}
