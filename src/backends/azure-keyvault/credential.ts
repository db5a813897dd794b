import {
  ClientSecretCredential,
  DefaultAzureCredential,
  ManagedIdentityCredential,
  type TokenCredential,
} from '@azure/identity';
import { readSecret } from '../../config/secrets';
import type { AzureBackendConfig } from './config';

/**
 * The Entra ID credential for a backend's config: `default` is DefaultAzureCredential (env vars,
 * workload identity, managed identity, Azure CLI, ... in that order), `client-secret` reads the
 * secret from its env/file source now (CONFIG_INVALID if missing), `managed-identity` uses the
 * system-assigned identity or the user-assigned one named by clientId.
 */
export function credentialFor(config: AzureBackendConfig): TokenCredential {
  const c = config.credential;
  switch (c.type) {
    case 'default':
      return new DefaultAzureCredential();
    case 'client-secret':
      return new ClientSecretCredential(
        c.tenantId,
        c.clientId,
        readSecret(c.secret, `backend '${config.name}' client secret`),
      );
    case 'managed-identity':
      return c.clientId === undefined
        ? new ManagedIdentityCredential()
        : new ManagedIdentityCredential({ clientId: c.clientId });
  }
}
