/**
 * Token-level hygiene for `hsm check`: what only a listing of every object on a PKCS#11 token,
 * with its attributes, can show (uses besides signing, mutability, labels, half-made keys).
 */

import { isKeySeal, type TokenObject } from '../backends/backend-objects';
import type { HsmFindingKind } from '../policy/hsm-findings';

/** How a finding names an object: `private key 'keywarden:s:k' (id 0a0b)`. */
export function nameObject(o: TokenObject): string {
  const noun = isKeySeal(o)
    ? 'key seal'
    : o.class === 'private' || o.class === 'public' || o.class === 'secret'
      ? `${o.class} key`
      : o.class === 'data'
        ? 'data object'
        : o.class;
  return `${noun} ${o.label === '' ? '(no label)' : `'${o.label}'`} (id ${o.id || '-'})`;
}

const UNREPORTED = (attr: string) => ` (the module does not report ${attr})`;

/**
 * One object's token-level hygiene: a private key serves signing only and cannot be changed or
 * copied; a key seal cannot be changed; every object says what it is (a label).
 */
export function tokenHygiene(
  o: TokenObject,
  what: string,
  report: (kind: HsmFindingKind, message: string) => void,
): void {
  const a = o.attributes;
  if (o.class === 'private') {
    const uses: [HsmFindingKind, boolean | undefined, string][] = [
      ['can-decrypt', a.decrypt, 'can decrypt (CKA_DECRYPT)'],
      ['can-unwrap', a.unwrap, 'can unwrap other keys (CKA_UNWRAP)'],
      ['can-derive', a.derive, 'can derive keys (CKA_DERIVE)'],
      ['can-sign-recover', a.signRecover, 'can sign with message recovery (CKA_SIGN_RECOVER)'],
    ];
    for (const [kind, value, text] of uses) {
      if (value === true) report(kind, `${what} ${text}: a signing key must serve no other use`);
    }
    if (a.modifiable !== false) {
      report(
        'modifiable',
        `${what} is modifiable${a.modifiable === undefined ? UNREPORTED('CKA_MODIFIABLE') : ''}: ` +
          'anyone logged in to the token can change its attributes; rotate the key',
      );
    }
    if (a.copyable !== false) {
      report(
        'copyable',
        `${what} can be copied with C_CopyObject${a.copyable === undefined ? UNREPORTED('CKA_COPYABLE') : ''}; ` +
          'rotate the key',
      );
    }
  }
  if (isKeySeal(o) && a.modifiable !== false) {
    report(
      'modifiable',
      `${what} is modifiable${a.modifiable === undefined ? UNREPORTED('CKA_MODIFIABLE') : ''}`,
    );
  }
  if (o.label === '') report('unlabelled', `${what} has no label: nothing on the token says what it is for`);
}

/**
 * Halves left behind (by a crash, or by hand) under a keywarden label: a private key without the
 * public key of the same label and CKA_ID, or the reverse, and a key seal with no key pair under
 * its label. A key pair without a seal is not one (keys made before seals have none).
 */
export function partialObjects(
  objects: readonly TokenObject[],
): { kind: HsmFindingKind; object: TokenObject; message: string }[] {
  const keywarden = objects.filter((o) => o.keyId !== null);
  const keys = keywarden.filter((o) => o.class === 'private' || o.class === 'public');
  const out: { kind: HsmFindingKind; object: TokenObject; message: string }[] = [];
  for (const k of keys) {
    const other = k.class === 'private' ? 'public' : 'private';
    if (keys.some((o) => o.class === other && o.label === k.label && o.id === k.id)) continue;
    out.push({
      kind: k.class === 'private' ? 'private-key-without-public' : 'public-key-without-private',
      object: k,
      message: `${nameObject(k)} has no ${other} key with its label and id: a partial key pair`,
    });
  }
  for (const seal of keywarden.filter(isKeySeal)) {
    if (keys.some((o) => o.label === seal.label)) continue;
    out.push({
      kind: 'seal-without-key',
      object: seal,
      message: `${nameObject(seal)} has no key pair under its label: a partial object`,
    });
  }
  return out;
}
