import { readSecret } from '../../config/secrets';
import type { BackendType } from '../backend-type';
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
