/** Azure Key Vault key backend: public surface. */
export { openAzureKeyVaultBackend, type AzureKeyVaultBackendOptions } from './open-azure-keyvault-backend';
export { AzureKeyVaultBackend, type AzureKeyVaultBackendSettings } from './azure-keyvault-backend';
export { keyName, keyNamePrefix, isValidKeyName, TAG_KEY_ID, TAG_SCOPE } from './key-name';
export { DEFAULT_RETRY_SETTINGS, type RetrySettings } from './vault-call';
