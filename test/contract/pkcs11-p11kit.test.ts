import { openPkcs11Backend } from '../../src/backends/pkcs11';
import type { SigningAlg } from '../../src/policy/algorithms';
import { startP11KitServer } from '../helpers/p11kit-server';
import { createSoftHsmToken } from '../helpers/softhsm';
import { describeKeyBackendContract } from './key-backend.contract';
import { pkcs11Config } from './pkcs11-fixture';

/**
 * The same contract through p11-kit's RPC (the deployment shape of the quick start, the container
 * and the systemd units: SoftHSM2 in a `p11-kit server` of its own, keywarden loading only
 * p11-kit-client.so). EdDSA is left out: no p11-kit release up to 0.26 carries CKM_EDDSA
 * (docs/hsm-vendors.md).
 */
const THROUGH_P11KIT: readonly SigningAlg[] = ['ES256', 'ES384', 'RS256', 'PS256'];

describeKeyBackendContract('PKCS#11 on SoftHSM2 through p11-kit', async () => {
  const token = await createSoftHsmToken();
  const server = await startP11KitServer(token);
  const backend = await openPkcs11Backend(
    pkcs11Config(token, { module: server.modulePath, moduleEnv: server.moduleEnv }),
  );
  return {
    backend,
    algs: THROUGH_P11KIT,
    teardown: async () => {
      await backend.close();
      await server.stop();
      await token.cleanup();
    },
  };
});
