import * as fs from 'node:fs';
import { secretSourceProblem } from '../../config/secrets';
import { KeywardenError } from '../../policy/errors';
import type { BackendCheckProblem, BackendType } from '../backend-type';
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
  localProblems(config, env) {
    const problems: BackendCheckProblem[] = [];
    if (config.credential.type === 'client-secret') {
      const secret = secretSourceProblem(config.credential.secret, 'client secret', env);
      if (secret)
        problems.push({
          field: 'credential.secret',
          code: 'CONFIG_INVALID',
          message: secret,
          blocksProbe: true,
        });
    }
    if (config.caFile) {
      try {
        fs.accessSync(config.caFile, fs.constants.R_OK);
      } catch (e) {
        const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        problems.push({
          field: 'caFile',
          code: 'CONFIG_INVALID',
          message: `caFile ${config.caFile}: ${why}`,
        });
      }
    }
    return problems;
  },
  async probe(config) {
    // Opening makes no network call; the health probe lists one key's properties: a read.
    try {
      const backend = await this.open(config);
      try {
        const h = await backend.health();
        const problems: BackendCheckProblem[] = h.ok
          ? []
          : [{ field: null, code: 'BACKEND_UNAVAILABLE', message: h.detail }];
        return { problems, summary: `Azure Key Vault ${config.vaultUrl}: ${h.ok ? 'reachable' : h.detail}` };
      } finally {
        await backend.close();
      }
    } catch (e) {
      const code = e instanceof KeywardenError ? e.code : 'BACKEND_ERROR';
      const message = `${config.vaultUrl}: ${(e as Error).message}`;
      return { problems: [{ field: null, code, message }], summary: message };
    }
  },
  status(config) {
    return { details: { vaultUrl: config.vaultUrl }, summary: [`Azure Key Vault ${config.vaultUrl}`] };
  },
};
