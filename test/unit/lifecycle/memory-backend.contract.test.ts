/**
 * The KeyBackend contract every real backend passes (test/contract/key-backend.contract.ts), run
 * against the in-memory fake the lifecycle unit tests use: proof that the fake behaves as the
 * contract says, so what those tests show holds for the real backends too.
 */
import { SIGNING_ALGS } from '../../../src/policy/algorithms';
import { describeKeyBackendContract } from '../../contract/key-backend.contract';
import { MemoryBackend } from '../../helpers/fakes';

describeKeyBackendContract('MemoryBackend (test/helpers/fakes.ts)', async () => {
  const backend = new MemoryBackend('memory');
  return {
    backend,
    algs: SIGNING_ALGS,
    teardown: async () => {
      await backend.close();
    },
  };
});
