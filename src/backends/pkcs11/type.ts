import * as fs from 'node:fs';
import { readSecret, secretSourceProblem } from '../../config/secrets';
import { KeywardenError } from '../../policy/errors';
import type { BackendCheckProblem, BackendType } from '../backend-type';
import { pkcs11ConfigRules, type Pkcs11BackendConfig } from './config';

/** Bytes as people read them. */
const bytes = (n: number | null): string => (n === null ? 'not reported' : `${n} B`);

/**
 * `type: pkcs11`: any PKCS#11 module (a vendor's, SoftHSM2, p11-kit's client). pkcs11js is
 * loaded when a backend is opened or described, never at import.
 */
export const pkcs11BackendType: BackendType<Pkcs11BackendConfig> = {
  ...pkcs11ConfigRules,
  async open(config) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { openPkcs11Backend } = require('./open-pkcs11-backend') as typeof import('./open-pkcs11-backend');
    const pinValue = readSecret(config.pin, `backend ${config.name} PIN`);
    return openPkcs11Backend({ ...config, pinValue });
  },
  localProblems(config, env) {
    const problems: BackendCheckProblem[] = [];
    const module = fileProblem(config.module);
    if (module) {
      problems.push({
        field: 'module',
        code: 'BACKEND_MODULE_NOT_FOUND',
        message: `PKCS#11 module ${config.module}: ${module}`,
        blocksProbe: true,
      });
    }
    const pin = secretSourceProblem(config.pin, 'PIN', env);
    if (pin) problems.push({ field: 'pin', code: 'CONFIG_INVALID', message: pin });
    return problems;
  },
  async probe(config) {
    // Loads the module and reads its slots and tokens, as `hsm status` does. No login: a wrong
    // PIN would count against the token's retry limit, and a login is a side effect.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { describeToken } = require('./describe-token') as typeof import('./describe-token');
    let m: ReturnType<typeof describeToken>;
    try {
      m = describeToken({
        module: config.module,
        moduleEnv: config.moduleEnv,
        tokenLabel: config.tokenLabel,
      });
    } catch (e) {
      const code = e instanceof KeywardenError ? e.code : 'BACKEND_ERROR';
      const message = `PKCS#11 module ${config.module}: ${(e as Error).message}`;
      return { problems: [{ field: 'module', code, message }], summary: message };
    }
    const summary = `PKCS#11 ${m.library} ${m.libraryVersion} (${m.modulePath})`;
    const token = m.token?.token ?? null;
    if (!token) {
      const labels = m.slots.flatMap((s) => (s.token?.label ? [`'${s.token.label}'`] : []));
      const message = `no token labelled '${config.tokenLabel}' (tokens present: ${labels.join(', ') || 'none'})`;
      return { problems: [{ field: 'tokenLabel', code: 'BACKEND_TOKEN_NOT_FOUND', message }], summary };
    }
    if (token.userPinLocked) {
      const message = `the user PIN of token '${config.tokenLabel}' is locked`;
      return { problems: [{ field: 'pin', code: 'BACKEND_PIN_INCORRECT', message }], summary };
    }
    return { problems: [], summary: `${summary}, token '${config.tokenLabel}' in slot ${m.token!.slotId}` };
  },
  status(config) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { describeToken } = require('./describe-token') as typeof import('./describe-token');
    try {
      const m = describeToken({
        module: config.module,
        moduleEnv: config.moduleEnv,
        tokenLabel: config.tokenLabel,
      });
      const summary = [
        `PKCS#11 ${m.modulePath}`,
        `  library ${m.library} ${m.libraryVersion} (${m.manufacturer}), Cryptoki ${m.cryptokiVersion}`,
        `  configured token '${config.tokenLabel}': ${m.token ? `slot ${m.token.slotId}` : 'NOT FOUND'}`,
      ];
      for (const s of m.slots) {
        const t = s.token;
        summary.push(
          `  slot ${s.slotId} ${s.description}: ${t ? `token '${t.label}' (${t.model}, serial ${t.serialNumber})` : 'no token'}`,
        );
        if (t) {
          summary.push(
            `    initialized ${t.initialized}, user PIN ${t.userPinLocked ? 'LOCKED' : t.userPinCountLow ? 'count low' : 'ok'}, ` +
              `free private memory ${bytes(t.freePrivateMemory)}, free public memory ${bytes(t.freePublicMemory)}`,
            `    algorithms: ${Object.entries(t.algorithms)
              .map(([alg, ok]) => `${alg} ${ok ? 'yes' : 'no'}`)
              .join(', ')}`,
          );
        }
      }
      return { details: { tokenLabel: config.tokenLabel, module: m, error: null }, summary };
    } catch (e) {
      const error = (e as Error).message;
      return {
        details: { tokenLabel: config.tokenLabel, module: null, error },
        summary: [`PKCS#11 token '${config.tokenLabel}': ERROR ${error}`],
      };
    }
  },
};

/** Why `file` is not a readable file, or null. */
function fileProblem(file: string): string | null {
  try {
    if (!fs.statSync(file).isFile()) return 'not a file';
    fs.accessSync(file, fs.constants.R_OK);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
}
