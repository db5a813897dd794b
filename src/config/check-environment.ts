import { backendType } from '../backends/registry';
import type { ConfigProblem, ErrorCode } from '../policy/errors';
import type { KeywardenConfig } from '../policy/scope';

/** A config problem found on this machine, with the backend and error code it concerns. */
export interface EnvironmentProblem extends ConfigProblem {
  code: ErrorCode;
  backend: string;
  /** The backend cannot be probed until this is fixed (see BackendCheckProblem). */
  blocksProbe: boolean;
}

/**
 * What a valid config file needs from the machine it runs on, checked without loading a module
 * or contacting anything (`config check`): each backend's secret source (the PIN variable is set,
 * the PIN file is readable and not empty), its module file, its CA file. Every problem at once,
 * each with the config field it concerns.
 */
export function environmentProblems(
  config: KeywardenConfig,
  env: NodeJS.ProcessEnv = process.env,
): EnvironmentProblem[] {
  const problems: EnvironmentProblem[] = [];
  for (const [name, backend] of Object.entries(config.backends)) {
    for (const p of backendType(backend.type).localProblems?.(backend, env) ?? []) {
      problems.push({
        path: `backends.${name}${p.field ? `.${p.field}` : ''}`,
        message: p.message,
        code: p.code,
        backend: name,
        blocksProbe: p.blocksProbe ?? false,
      });
    }
  }
  return problems;
}
