import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { TokenCredential } from '@azure/identity';
import { KeyClient, type KeyClientOptions } from '@azure/keyvault-keys';
import { KeywardenError } from '../../policy/errors';
import type { AzureBackendConfig } from './config';
import { AzureKeyVaultBackend, type AzureKeyVaultBackendSettings } from './azure-keyvault-backend';
import { credentialFor } from './credential';
import { DEFAULT_RETRY_SETTINGS, type RetrySettings } from './vault-call';

/** Programmatic options that do not belong in the config file (tests, embedding). */
export interface AzureKeyVaultBackendOptions {
  /** Use this credential instead of the one `config.credential` describes. */
  credential?: TokenCredential;
  /** Overrides of the retry/timeout defaults (3 retries, 500 ms backoff base, Retry-After up to 30 s, 30 s per request). */
  retry?: Partial<RetrySettings>;
  /** destroy(): poll interval while waiting for the deleted state before a purge (default 1000 ms). */
  deletePollIntervalMs?: number;
  /** destroy(): how long to wait for the deleted state before a purge (default 60 s). */
  deleteTimeoutMs?: number;
}

/**
 * Opens an Azure Key Vault backend. Makes no network call (a vault that is down at start-up
 * shows in health(), not as a start failure). TLS trust: the system's public roots, plus the PEM
 * bundle in `config.caFile` when set, handed to the SDK pipeline as `tlsOptions.ca`; certificate
 * verification is never switched off.
 *
 * Throws CONFIG_INVALID for a non-https vaultUrl, a bad keyPrefix, an unreadable caFile or a
 * missing client secret.
 */
export async function openAzureKeyVaultBackend(
  config: AzureBackendConfig,
  opts: AzureKeyVaultBackendOptions = {},
): Promise<AzureKeyVaultBackend> {
  const where = `backend '${config.name}'`;
  let url: URL;
  try {
    url = new URL(config.vaultUrl);
  } catch (e) {
    throw new KeywardenError('CONFIG_INVALID', `${where}: vaultUrl '${config.vaultUrl}' is not a URL`, {
      cause: e,
    });
  }
  if (url.protocol !== 'https:') {
    throw new KeywardenError('CONFIG_INVALID', `${where}: vaultUrl must be https://, got ${url.protocol}`);
  }
  if (!/^[A-Za-z0-9-]{1,24}$/.test(config.keyPrefix)) {
    throw new KeywardenError('CONFIG_INVALID', `${where}: keyPrefix must be 1-24 letters, digits or dashes`);
  }
  const credential = opts.credential ?? credentialFor(config);
  const clientOptions: KeyClientOptions = {
    // Retries are ours (vault-call.ts): bounded Retry-After, no blind retry of a create.
    retryOptions: { maxRetries: 0 },
    disableChallengeResourceVerification: config.disableChallengeResourceVerification,
    userAgentOptions: { userAgentPrefix: 'keywarden' },
  };
  if (config.caFile !== undefined) {
    // `ca` replaces Node's default roots, so keep them and add the extra CA(s).
    clientOptions.tlsOptions = { ca: [...rootCertificates, readCaFile(config.caFile, where)] };
  }
  const client = new KeyClient(url.toString().replace(/\/+$/, ''), credential, clientOptions);
  const settings: AzureKeyVaultBackendSettings = {
    retry: { ...DEFAULT_RETRY_SETTINGS, ...opts.retry },
    deletePollIntervalMs: opts.deletePollIntervalMs ?? 1_000,
    deleteTimeoutMs: opts.deleteTimeoutMs ?? 60_000,
  };
  return new AzureKeyVaultBackend(client, config, settings);
}

function readCaFile(file: string, where: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new KeywardenError('CONFIG_INVALID', `${where}: cannot read caFile ${file}: ${code}`, { cause: e });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new KeywardenError('CONFIG_INVALID', `${where}: caFile ${file} holds no PEM certificate`);
  }
  return pem;
}
