import { generateKeyPair, randomBytes, sign as nodeSign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type {
  BackendHealth,
  BackendObject,
  GenerateKeyRequest,
  GeneratedKey,
  InventoryEntry,
  KeyBackend,
  KeyInspection,
  PlanKeyRequest,
} from '../../src/backends/key-backend';
import type { BackendRef, PublicJwk } from '../../src/policy/key';

const generate = promisify(generateKeyPair);

interface HeldKey {
  keyId: string;
  scope: string;
  publicJwk: PublicJwk;
  privateKey: KeyObject;
  seal: Uint8Array | null;
}

/**
 * BENCHMARK ONLY: a key backend that makes P-256 keys in Node's memory. It stands in for an HSM
 * whose key generation costs nothing, so the scale benchmark can time keywarden's own work
 * (store, audit log, policy, seals, key cache) for thousands of rotations and tell it apart from
 * the HSM's. It signs only what keywarden's lifecycle asks of a new key (its seal); nothing here
 * may ever reach a product path.
 */
export class ZeroCostKeygenBackend implements KeyBackend {
  readonly type = 'pkcs11' as const;
  generated = 0;
  private readonly keys = new Map<string, HeldKey>();

  constructor(readonly name: string) {}

  planKey(request: PlanKeyRequest): BackendRef {
    return {
      backend: this.name,
      ref: { id: randomBytes(16).toString('hex'), label: `bench:${request.scope}:${request.keyId}` },
    };
  }

  refIdentity(ref: BackendRef): string {
    return ref.ref.id ?? '';
  }

  async generate(ref: BackendRef, request: GenerateKeyRequest): Promise<GeneratedKey> {
    if (request.alg !== 'ES256') throw new Error('the zero-cost backend makes ES256 keys only');
    const { publicKey, privateKey } = await generate('ec', { namedCurve: 'P-256' });
    const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
    const publicJwk = { kty: kty as PublicJwk['kty'], crv, x, y };
    this.keys.set(this.refIdentity(ref), {
      keyId: request.keyId,
      scope: request.scope,
      publicJwk,
      privateKey,
      seal: null,
    });
    this.generated++;
    return { ref, publicJwk };
  }

  async sign(ref: BackendRef, _alg: string, input: Uint8Array): Promise<Uint8Array> {
    const key = this.keys.get(this.refIdentity(ref));
    if (!key) throw new Error('the zero-cost benchmark backend has no such key');
    return nodeSign('sha256', input, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  }

  async attachSeal(ref: BackendRef, seal: Uint8Array): Promise<void> {
    const key = this.keys.get(this.refIdentity(ref));
    if (!key) throw new Error('the zero-cost benchmark backend has no such key');
    key.seal = seal;
  }

  async inventory(): Promise<InventoryEntry[]> {
    return [...this.keys].map(([identity, k]) => ({
      identity,
      ref: { backend: this.name, ref: { id: identity, label: `bench:${k.scope}:${k.keyId}` } },
      label: `bench:${k.scope}:${k.keyId}`,
      keyId: k.keyId,
      scope: k.scope,
      sealed: k.seal !== null,
    }));
  }

  async inspectKeys(keys: readonly { ref: BackendRef }[]): Promise<KeyInspection[]> {
    return keys.map(({ ref }): KeyInspection => {
      const k = this.keys.get(this.refIdentity(ref));
      if (!k) return { status: 'missing' };
      const validity = { notBefore: null, notAfter: null, precision: 'second' } as const;
      return {
        status: 'found',
        facts: { publicJwk: k.publicJwk, keyId: k.keyId, scope: k.scope, seal: k.seal, validity },
      };
    });
  }

  async publicKey(ref: BackendRef): Promise<PublicJwk> {
    const k = this.keys.get(this.refIdentity(ref));
    if (!k) throw new Error('the zero-cost benchmark backend has no such key');
    return k.publicJwk;
  }

  async exists(ref: BackendRef): Promise<boolean> {
    return this.keys.has(this.refIdentity(ref));
  }

  async destroy(ref: BackendRef): Promise<void> {
    this.keys.delete(this.refIdentity(ref));
  }

  async list(): Promise<BackendObject[]> {
    return [];
  }

  async health(): Promise<BackendHealth> {
    return { ok: true, detail: 'benchmark zero-cost keygen' };
  }

  async close(): Promise<void> {}
}
