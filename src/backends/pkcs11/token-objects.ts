import * as pkcs11js from 'pkcs11js';
import type { Cryptoki, Handle } from './cryptoki';
import { CKK_EC_EDWARDS, parseKeyLabel } from './key-templates';
import { readBool, readUlong } from './public-jwk';
import type { TokenObject, TokenObjectAttributes, TokenObjectClass } from '../backend-objects';

export {
  isKeySeal,
  type TokenObject,
  type TokenObjectAttributes,
  type TokenObjectClass,
} from '../backend-objects';

const CLASS_NAMES: ReadonlyMap<number, TokenObjectClass> = new Map([
  [pkcs11js.CKO_PRIVATE_KEY, 'private'],
  [pkcs11js.CKO_PUBLIC_KEY, 'public'],
  [pkcs11js.CKO_SECRET_KEY, 'secret'],
  [pkcs11js.CKO_CERTIFICATE, 'certificate'],
  [pkcs11js.CKO_DATA, 'data'],
]);

const KEY_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [pkcs11js.CKK_RSA, 'RSA'],
  [pkcs11js.CKK_EC, 'EC'],
  [CKK_EC_EDWARDS, 'EC_EDWARDS'],
  [pkcs11js.CKK_AES, 'AES'],
  [pkcs11js.CKK_GENERIC_SECRET, 'GENERIC_SECRET'],
  [pkcs11js.CKK_DES3, 'DES3'],
]);

/** Attributes read per class. Each is read on its own: one refused attribute must not hide the rest. */
const BOOL_ATTRIBUTES: ReadonlyArray<[keyof TokenObjectAttributes, number, readonly TokenObjectClass[]]> = [
  ['token', pkcs11js.CKA_TOKEN, ['private', 'public', 'secret', 'certificate', 'data', 'other']],
  ['private', pkcs11js.CKA_PRIVATE, ['private', 'public', 'secret', 'certificate', 'data', 'other']],
  ['modifiable', pkcs11js.CKA_MODIFIABLE, ['private', 'public', 'secret', 'certificate', 'data', 'other']],
  ['copyable', pkcs11js.CKA_COPYABLE, ['private', 'public', 'secret', 'certificate', 'data', 'other']],
  ['sensitive', pkcs11js.CKA_SENSITIVE, ['private', 'secret']],
  ['extractable', pkcs11js.CKA_EXTRACTABLE, ['private', 'secret']],
  ['alwaysSensitive', pkcs11js.CKA_ALWAYS_SENSITIVE, ['private', 'secret']],
  ['neverExtractable', pkcs11js.CKA_NEVER_EXTRACTABLE, ['private', 'secret']],
  ['sign', pkcs11js.CKA_SIGN, ['private', 'secret']],
  ['signRecover', pkcs11js.CKA_SIGN_RECOVER, ['private', 'secret']],
  ['decrypt', pkcs11js.CKA_DECRYPT, ['private', 'secret']],
  ['unwrap', pkcs11js.CKA_UNWRAP, ['private', 'secret']],
  ['derive', pkcs11js.CKA_DERIVE, ['private', 'secret']],
];

/**
 * Describes one object. Deliberately reads no value attributes: CKA_VALUE (of any object, a key
 * seal's included) and the private exponents are never asked for, so no code path here could carry
 * key material. A data object's CKA_APPLICATION is read: it says what the object is.
 */
export function describeObject(ck: Cryptoki, session: Handle, handle: Handle): TokenObject {
  const classValue = readUlong(ck.tryGetAttribute(session, handle, pkcs11js.CKA_CLASS));
  const cls: TokenObjectClass = (classValue !== null && CLASS_NAMES.get(classValue)) || 'other';
  const label = ck.tryGetAttribute(session, handle, pkcs11js.CKA_LABEL)?.toString('utf8') ?? '';
  const id = ck.tryGetAttribute(session, handle, pkcs11js.CKA_ID)?.toString('hex') ?? '';
  let keyType: string | null = null;
  if (cls === 'private' || cls === 'public' || cls === 'secret') {
    const kt = readUlong(ck.tryGetAttribute(session, handle, pkcs11js.CKA_KEY_TYPE));
    keyType = kt === null ? null : (KEY_TYPE_NAMES.get(kt) ?? `0x${kt.toString(16)}`);
  }
  const application =
    cls === 'data'
      ? ck.tryGetAttribute(session, handle, pkcs11js.CKA_APPLICATION)?.toString('utf8')
      : undefined;
  const attributes: TokenObjectAttributes = {};
  for (const [name, type, classes] of BOOL_ATTRIBUTES) {
    if (!classes.includes(cls)) continue;
    const v = readBool(ck.tryGetAttribute(session, handle, type));
    if (v !== undefined) attributes[name] = v;
  }
  return {
    class: cls,
    id,
    label,
    keyType,
    ...parseKeyLabel(label),
    application,
    attributes,
    ...(classValue === null ? { incomplete: true } : {}),
  };
}
