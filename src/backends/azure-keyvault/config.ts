import { z } from 'zod';
import type { BackendConfigBase, BackendTypeRules } from '../../policy/backend-type';
import { pinSourceSchema } from '../../policy/config-schema';
import type { PinSource } from '../../policy/scope';

export type AzureCredentialConfig =
  | { type: 'default' }
  | { type: 'client-secret'; tenantId: string; clientId: string; secret: PinSource }
  | { type: 'managed-identity'; clientId?: string };

/** An Azure Key Vault (or Managed HSM) backend as configured. */
export interface AzureBackendConfig extends BackendConfigBase {
  type: 'azure';
  name: string;
  vaultUrl: string;
  keyPrefix: string;
  /** HSM-protected key types unless software keys are explicitly allowed. */
  keyProtection: 'hsm' | 'software';
  credential: AzureCredentialConfig;
  /** Purge deleted keys (needs the purge permission and no purge protection). */
  purgeOnDestroy: boolean;
  /** Extra CA bundle (PEM) to trust for the vault endpoint, e.g. a private endpoint's proxy. */
  caFile?: string;
  /** Only for local protocol servers: skip the SDK's challenge-resource check. */
  disableChallengeResourceVerification: boolean;
}

const credential = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('default') }),
  z.strictObject({
    type: z.literal('client-secret'),
    tenantId: z.string().min(1),
    clientId: z.string().min(1),
    secret: pinSourceSchema,
  }),
  z.strictObject({ type: z.literal('managed-identity'), clientId: z.string().min(1).optional() }),
]);

const schema = z.strictObject({
  type: z.literal('azure'),
  vaultUrl: z.url({ protocol: /^https$/, error: 'must be an https:// URL' }),
  keyPrefix: z
    .string()
    .regex(/^[A-Za-z0-9-]{1,24}$/, 'must be 1-24 letters, digits or dashes')
    .default('keywarden'),
  keyProtection: z.enum(['hsm', 'software']).default('hsm'),
  credential: credential.default({ type: 'default' }),
  purgeOnDestroy: z.boolean().default(false),
  caFile: z.string().min(1).optional(),
  disableChallengeResourceVerification: z.boolean().default(false),
});

/** The config rules of `type: azure` backends. */
export const azureConfigRules: BackendTypeRules<AzureBackendConfig> = {
  type: 'azure',
  schema,
  toConfig(name, parsed, resolve) {
    const b = parsed as z.infer<typeof schema>;
    return { ...b, name, ...(b.caFile ? { caFile: resolve(b.caFile) } : {}) } as AzureBackendConfig;
  },
  checkScope(scope, backend) {
    const out: { field: string; message: string }[] = [];
    if (scope.alg === 'EdDSA') {
      out.push({
        field: 'alg',
        message: 'EdDSA is not supported by Azure Key Vault; use ES256/ES384/RS256/PS256',
      });
    }
    if (backend.keyProtection === 'software' && scope.production) {
      out.push({
        field: 'backend',
        message: `backend ${backend.name} uses software-protected keys; set production: false to allow it`,
      });
    }
    return out;
  },
};
