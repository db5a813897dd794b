import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type {
  BackendHealth,
  BackendObject,
  GenerateKeyRequest,
  GeneratedKey,
  KeyBackend,
  PlanKeyRequest,
} from '../../src/backends/key-backend';
import type { BackendRef, PublicJwk } from '../../src/policy/key';

const generate = promisify(generateKeyPair);

/**
 * BENCHMARK ONLY: a key backend that makes P-256 public keys in Node and throws the private half
 * away. It stands in for an HSM whose key generation costs nothing, so the scale benchmark can
 * time keywarden's own work (store, audit log, policy, key cache) for thousands of rotations
 * and tell it apart from the HSM's. It cannot sign; nothing here may ever reach a product path.
 */
export class ZeroCostKeygenBackend implements KeyBackend {
  readonly type = 'pkcs11' as const;
  generated = 0;

  constructor(readonly name: string) {}

  planKey(request: PlanKeyRequest): BackendRef {
    return {
      backend: this.name,
      ref: { id: randomBytes(16).toString('hex'), label: `bench:${request.scope}` },
    };
  }

  async generate(ref: BackendRef, request: GenerateKeyRequest): Promise<GeneratedKey> {
    if (request.alg !== 'ES256') throw new Error('the zero-cost backend makes ES256 keys only');
    const { publicKey } = await generate('ec', { namedCurve: 'P-256' });
    const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
    this.generated++;
    return { ref, publicJwk: { kty: kty as PublicJwk['kty'], crv, x, y } };
  }

  async sign(): Promise<Uint8Array> {
    throw new Error('the zero-cost benchmark backend cannot sign');
  }

  async publicKey(): Promise<PublicJwk> {
    throw new Error('the zero-cost benchmark backend keeps no keys');
  }

  async exists(): Promise<boolean> {
    return false;
  }

  async destroy(): Promise<void> {}

  async list(): Promise<BackendObject[]> {
    return [];
  }

  async health(): Promise<BackendHealth> {
    return { ok: true, detail: 'benchmark zero-cost keygen' };
  }

  async close(): Promise<void> {}
}
