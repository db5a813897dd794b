import type { BackendType } from '../backend-type';
import { azureConfigRules, type AzureBackendConfig } from './config';

/** `type: azure`: Azure Key Vault Premium or Managed HSM. The SDK loads when one is opened. */
export const azureBackendType: BackendType<AzureBackendConfig> = {
  ...azureConfigRules,
  async open(config) {
    type Opener = typeof import('./open-azure-keyvault-backend');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { openAzureKeyVaultBackend } = require('./open-azure-keyvault-backend') as Opener;
    return openAzureKeyVaultBackend(config);
  },
  status(config) {
    return { details: { vaultUrl: config.vaultUrl }, summary: [`Azure Key Vault ${config.vaultUrl}`] };
  },
};
