import { openAzureKeyVaultBackend } from '../../src/backends/azure-keyvault';
import type { AzureBackendConfig } from '../../src/backends/azure-keyvault/config';
import { startKeyVaultServer } from '../helpers/keyvault-server';
import { describeKeyBackendContract } from './key-backend.contract';

// The shared contract, run through the real @azure/keyvault-keys SDK against the local Key Vault
// protocol server (HTTPS with a test CA the backend trusts through `caFile`).
describeKeyBackendContract('Azure Key Vault (local protocol server)', async () => {
  const server = await startKeyVaultServer();
  const config: AzureBackendConfig = {
    type: 'azure',
    name: 'azure-contract',
    vaultUrl: server.vaultUrl,
    keyPrefix: 'kwc',
    keyProtection: 'hsm',
    credential: { type: 'default' },
    purgeOnDestroy: true,
    caFile: server.caFile,
    disableChallengeResourceVerification: true,
  };
  const backend = await openAzureKeyVaultBackend(config, {
    credential: server.credential(),
    deletePollIntervalMs: 20,
  });
  return {
    backend,
    algs: ['ES256', 'ES384', 'RS256', 'PS256'],
    async teardown() {
      await backend.close();
      await server.close();
    },
  };
});
