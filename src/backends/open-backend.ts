import { readSecret } from '../config/secrets';
import type { BackendConfig } from '../policy/scope';
import type { KeyBackend } from './key-backend';

/**
 * Opens a configured backend. Backend modules are loaded on first use so a process that only
 * needs PKCS#11 never loads the Azure SDK (and vice versa).
 */
export async function openBackend(config: BackendConfig): Promise<KeyBackend> {
  if (config.type === 'pkcs11') {
    const { openPkcs11Backend } = await import('./pkcs11/index.js');
    const pinValue = readSecret(config.pin, `backend ${config.name} PIN`);
    return openPkcs11Backend({ ...config, pinValue });
  }
  const { openAzureKeyVaultBackend } = await import('./azure-keyvault/index.js');
  return openAzureKeyVaultBackend(config);
}
