/**
 * A local Azure Key Vault (keys) protocol server for tests: real HTTPS on 127.0.0.1 with a
 * throw-away CA, real keys made with node:crypto, Key Vault's auth challenge, error shapes and
 * validity checks, plus fault injection and request counters; and a loopback App Service
 * managed-identity endpoint handing out its tokens, for processes using the real credential path.
 */
export {
  startKeyVaultServer,
  staticTokenCredential,
  KeyVaultTestServer,
  KEY_VAULT_OPS,
  type KeyVaultOp,
  type Fault,
  type RequestRecord,
  type KeyVaultServerOptions,
  type TokenRequestRecord,
} from './server';
export type { KeyVersionInfo } from './vault-state';
export { testTlsMaterial, type TestTlsMaterial } from './tls-cert';
export {
  startManagedIdentityEndpoint,
  ManagedIdentityEndpoint,
  APP_SERVICE_MSI_API_VERSION,
  KEY_VAULT_RESOURCE,
  type ManagedIdentityRequest,
  type ManagedIdentityEndpointOptions,
} from './managed-identity-endpoint';
