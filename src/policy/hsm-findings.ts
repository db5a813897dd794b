/**
 * The kinds of finding `keywarden hsm check` reports (I3 hygiene), each with the one-line meaning
 * that `--help` prints and docs/hsm-vendors.md documents (a test keeps the two in step). Scripts branch
 * on the kind, never on the message: kinds are stable, new ones are only appended.
 */
export const HSM_FINDING_KINDS = {
  extractable: 'a private key can be exported (CKA_EXTRACTABLE not false)',
  'not-sensitive': 'a private key can be read (CKA_SENSITIVE not true)',
  'not-always-sensitive': 'a private key was readable at some point (CKA_ALWAYS_SENSITIVE not true)',
  'not-never-extractable': 'a private key was exportable at some point (CKA_NEVER_EXTRACTABLE not true)',
  orphan: "an object carries keywarden's label but no key row matches it",
  'overdue-destroy': "a key's objects outlived its destroy time",
  'missing-object': 'a published key has no private key object: it cannot sign',
  unavailable: 'the backend could not be opened or listed',
  'can-decrypt': 'a private key can decrypt (CKA_DECRYPT true)',
  'can-unwrap': 'a private key can unwrap other keys (CKA_UNWRAP true)',
  'can-derive': 'a private key can derive keys (CKA_DERIVE true)',
  'can-sign-recover': 'a private key can sign with message recovery (CKA_SIGN_RECOVER true)',
  modifiable: 'a private key or key seal can have its attributes changed (CKA_MODIFIABLE not false)',
  copyable: 'a private key can be copied with C_CopyObject (CKA_COPYABLE not false)',
  unlabelled: 'an object on the token has an empty CKA_LABEL',
  'private-key-without-public': 'a keywarden label has a private key but no public key (partial object)',
  'public-key-without-private': 'a keywarden label has a public key but no private key (partial object)',
  'seal-without-key': 'a keywarden label has a key seal but no key pair (partial object)',
  'partial-object': 'an object without a readable CKA_CLASS, or another half-made one',
} as const satisfies Record<string, string>;

export type HsmFindingKind = keyof typeof HSM_FINDING_KINDS;
