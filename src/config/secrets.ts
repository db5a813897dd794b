import * as fs from 'node:fs';
import { KeywardenError } from '../policy/errors';
import type { PinSource } from '../policy/scope';

/**
 * Why a secret cannot be read from `source` (an unset variable, a missing, unreadable or empty
 * file), or null when it can. Reads it to find out and forgets it; the message names only where
 * it looked.
 */
export function secretSourceProblem(
  source: PinSource,
  what: string,
  env: NodeJS.ProcessEnv = process.env,
): string | null {
  try {
    readSecret(source, what, env);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Resolves a secret (HSM PIN, client secret) from an environment variable or a file. Secrets
 * never live in the YAML, and never appear in error messages: only where we looked.
 */
export function readSecret(source: PinSource, what: string, env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in source) {
    const v = env[source.env];
    if (v === undefined || v === '') {
      throw new KeywardenError('CONFIG_INVALID', `${what}: environment variable ${source.env} is not set`);
    }
    return v;
  }
  let text: string;
  try {
    text = fs.readFileSync(source.file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new KeywardenError('CONFIG_INVALID', `${what}: cannot read ${source.file}: ${code}`, { cause: e });
  }
  const v = text.replace(/\r?\n$/, '');
  if (v === '') throw new KeywardenError('CONFIG_INVALID', `${what}: ${source.file} is empty`);
  return v;
}
