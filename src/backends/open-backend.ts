import { readSecret } from '../config/secrets';
import type { BackendConfig } from '../policy/scope';
import type { KeyBackend } from './key-backend';

/**
 * Opens a configured backend. Backend modules are loaded on first use (a lazy require) so a
 * process that only needs PKCS#11 never loads the Azure SDK, and vice versa.
 */
export async function openBackend(config: BackendConfig): Promise<KeyBackend> {
  if (config.type === 'pkcs11') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { openPkcs11Backend } = require('./pkcs11') as typeof import('./pkcs11');
    const pinValue = readSecret(config.pin, `backend ${config.name} PIN`);
    return openPkcs11Backend({ ...config, pinValue });
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { openAzureKeyVaultBackend } = require('./azure-keyvault') as typeof import('./azure-keyvault');
  return openAzureKeyVaultBackend(config);
}
