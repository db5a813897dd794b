import { randomBytes } from 'node:crypto';
import { KeywardenError } from '../../policy/errors';
import type { BackendRef } from '../../policy/key';
import type { BackendObject, PlanKeyRequest } from '../key-backend';
import { keyLabel } from './key-templates';
import type { TokenObject } from './token-objects';

/**
 * How a PKCS#11 key is addressed in a BackendRef: `{ tokenLabel, id: <hex CKA_ID>, label }`, the
 * parts of an RFC 7512 `pkcs11:token=…;id=…;object=…` URI. CKA_ID is the key; label is for people.
 */
export interface KeyAddress {
  id: Buffer;
  idHex: string;
  label: string;
}

const ID_HEX = /^(?:[0-9a-f]{2}){1,64}$/;

/** A fresh address: a random 16-byte CKA_ID and the keywarden label. No I/O. */
export function planRef(backend: string, tokenLabel: string, request: PlanKeyRequest): BackendRef {
  if (!/^[^:\s]+$/.test(request.scope) || request.keyId.length === 0) {
    throw new KeywardenError('INTERNAL', `invalid scope/keyId for a key label: '${request.scope}'`);
  }
  const id = randomBytes(16).toString('hex');
  return { backend, ref: { tokenLabel, id, label: keyLabel(request.scope, request.keyId) } };
}

/** Checks a ref belongs to this backend and token and takes it apart. */
export function parseRef(ref: BackendRef, backend: string, tokenLabel: string): KeyAddress {
  const { tokenLabel: refToken, id, label } = ref.ref;
  if (ref.backend !== backend || refToken !== tokenLabel) {
    throw new KeywardenError(
      'BACKEND_ERROR',
      `key ref for backend '${ref.backend}', token '${String(refToken)}' given to backend '${backend}', ` +
        `token '${tokenLabel}'`,
    );
  }
  if (typeof id !== 'string' || !ID_HEX.test(id)) {
    throw new KeywardenError('BACKEND_ERROR', `key ref has no valid hex CKA_ID: '${String(id)}'`);
  }
  return { id: Buffer.from(id, 'hex'), idHex: id, label: typeof label === 'string' ? label : `id ${id}` };
}

/** A keywarden key object as `list()` reports it, with only the attributes the token answered. */
export function toBackendObject(o: TokenObject, backend: string, tokenLabel: string): BackendObject {
  const { sensitive, extractable, alwaysSensitive, neverExtractable } = o.attributes;
  const attributes = Object.fromEntries(
    Object.entries({ sensitive, extractable, alwaysSensitive, neverExtractable }).filter(
      ([, v]) => v !== undefined,
    ),
  );
  return {
    ref: { backend, ref: { tokenLabel, id: o.id, label: o.label } },
    label: o.label,
    keyId: o.keyId,
    scope: o.scope,
    kind: o.class === 'private' ? 'private' : 'public',
    attributes,
  };
}
