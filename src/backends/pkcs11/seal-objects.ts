import * as pkcs11js from 'pkcs11js';
import { KeywardenError } from '../../policy/errors';
import { KEY_SEAL_APPLICATION } from '../backend-objects';
import { isCkr, isTokenFault } from './ck-error';
import type { Attribute, Cryptoki, Handle } from './cryptoki';
import { readUlong } from './public-jwk';

/**
 * A key's seal lives on the token as a data object (CKO_DATA) beside the key pair: same label
 * (`keywarden:<scope>:<keyId>`), CKA_APPLICATION naming it, the seal as CKA_VALUE. Data objects
 * have no CKA_ID, so the label ties it to its key; the seal's signature covers the CKA_ID. It is
 * made non-modifiable where the token allows, and only someone logged in to the token can make
 * or remove one: the store cannot.
 */
export const SEAL_APPLICATION = KEY_SEAL_APPLICATION;

/** Template errors a token gives for an attribute it does not support on data objects. */
const ATTRIBUTE_REFUSED = [
  'CKR_ATTRIBUTE_TYPE_INVALID',
  'CKR_ATTRIBUTE_VALUE_INVALID',
  'CKR_TEMPLATE_INCONSISTENT',
] as const;

function sealTemplate(label: string, seal: Uint8Array, nonModifiable: boolean): Attribute[] {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_APPLICATION, value: SEAL_APPLICATION },
    { type: pkcs11js.CKA_VALUE, value: Buffer.from(seal) },
    ...(nonModifiable ? [{ type: pkcs11js.CKA_MODIFIABLE, value: false }] : []),
  ];
}

/** Handles of the seal objects carrying `label` (one, normally). */
export function findSealObjects(ck: Cryptoki, session: Handle, label: string): Handle[] {
  return ck.findObjects(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_APPLICATION, value: SEAL_APPLICATION },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
}

/**
 * Every seal object on the token, by label, from one C_FindObjects: SoftHSM2 reads every object
 * on each search, so the inventory and an inspection of many keys list the seals once rather than
 * searching once per key.
 */
export function sealObjectsByLabel(ck: Cryptoki, session: Handle): Map<string, Handle[]> {
  const handles = ck.findObjects(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
    { type: pkcs11js.CKA_APPLICATION, value: SEAL_APPLICATION },
  ]);
  const byLabel = new Map<string, Handle[]>();
  for (const h of handles) {
    const label = ck.tryGetAttribute(session, h, pkcs11js.CKA_LABEL)?.toString('utf8');
    if (label) byLabel.set(label, [...(byLabel.get(label) ?? []), h]);
  }
  return byLabel;
}

/**
 * The seal stored for `label` (its objects as `sealObjectsByLabel` found them), null when there
 * is none; BACKEND_ERROR when there are several.
 */
export function readSeal(
  ck: Cryptoki,
  session: Handle,
  label: string,
  found: readonly Handle[] = [],
): Buffer | null {
  if (found.length === 0) return null;
  if (found.length > 1) {
    throw new KeywardenError('BACKEND_ERROR', `PKCS#11: ${found.length} seal objects carry label ${label}`);
  }
  return ck.getAttributes(session, found[0] as Handle, [pkcs11js.CKA_VALUE]).get(pkcs11js.CKA_VALUE) ?? null;
}

/** The error for a second seal of one key. */
export function alreadySealed(label: string): KeywardenError {
  return new KeywardenError('BACKEND_OBJECT_EXISTS', `PKCS#11: key ${label} is already sealed`);
}

/** Writes the seal object for `label` and returns its handle; refuses when one exists. */
export function createSealObject(ck: Cryptoki, session: Handle, label: string, seal: Uint8Array): Handle {
  if (findSealObjects(ck, session, label).length > 0) throw alreadySealed(label);
  return createSealObjectUnchecked(ck, session, label, seal);
}

/**
 * Writes the seal object for `label` without searching for one first: for a key whose caller knows
 * it has none (pkcs11-backend.ts says when).
 */
export function createSealObjectUnchecked(
  ck: Cryptoki,
  session: Handle,
  label: string,
  seal: Uint8Array,
): Handle {
  try {
    return ck.createObject(session, sealTemplate(label, seal, true));
  } catch (e) {
    // A token that does not take CKA_MODIFIABLE on data objects still keeps the seal out of the
    // store's reach; `hsm check` reports modifiable objects.
    if (!isCkr(e, ...ATTRIBUTE_REFUSED)) throw e;
    return ck.createObject(session, sealTemplate(label, seal, false));
  }
}

/**
 * Whether `handle` (kept by this process) still names the seal object of `label`: one read of the
 * object's own attributes instead of a search. False for a handle that names nothing any more.
 */
export function isSealObject(ck: Cryptoki, session: Handle, handle: Handle, label: string): boolean {
  try {
    const attrs = ck.getAttributes(session, handle, [
      pkcs11js.CKA_CLASS,
      pkcs11js.CKA_APPLICATION,
      pkcs11js.CKA_LABEL,
    ]);
    return (
      readUlong(attrs.get(pkcs11js.CKA_CLASS)) === pkcs11js.CKO_DATA &&
      attrs.get(pkcs11js.CKA_APPLICATION)?.toString('utf8') === SEAL_APPLICATION &&
      attrs.get(pkcs11js.CKA_LABEL)?.toString('utf8') === label
    );
  } catch (e) {
    if (isTokenFault(e)) throw e;
    return false;
  }
}
