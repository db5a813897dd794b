import * as fs from 'node:fs';
import { BACKEND_TYPES } from '../backends/registry';
import type { KeywardenConfig } from '../policy/scope';
import { validateConfig as validateWith, type ValidateConfigContext } from '../policy/validate-config';

/**
 * Validates a parsed config document against every registered backend type (policy's
 * validateConfig takes the types as an argument; this is where they are supplied), reading scope
 * templates' tenants files from disk unless `ctx.readTenantsFile` says otherwise.
 */
export function validateConfig(
  raw: unknown,
  ctx: Omit<ValidateConfigContext, 'backendTypes'>,
): KeywardenConfig {
  return validateWith(raw, {
    readTenantsFile: (file) => fs.readFileSync(file, 'utf8'),
    ...ctx,
    backendTypes: BACKEND_TYPES,
  });
}
