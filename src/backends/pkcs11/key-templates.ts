import { hash } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { keySpecFor, type RsaModulusBits, type SigningAlg } from '../../policy/algorithms';
import { isCkr } from './ck-error';
import type { Attribute, Mechanism } from './cryptoki';

/** Ed25519 constants pkcs11js does not define (PKCS#11 3.0). */
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKK_EC_EDWARDS = 0x40;

/** DER-encoded curve OIDs for CKA_EC_PARAMS (named curves only). */
export const EC_PARAMS = {
  'P-256': Buffer.from('06082a8648ce3d030107', 'hex'), // 1.2.840.10045.3.1.7
  'P-384': Buffer.from('06052b81040022', 'hex'), // 1.3.132.0.34
  Ed25519: Buffer.from('06032b6570', 'hex'), // 1.3.101.112
} as const;
export type CurveName = keyof typeof EC_PARAMS;

/** Every label keywarden writes starts with this; `list()` filters on it. */
export const LABEL_PREFIX = 'keywarden:';

/** `keywarden:<scope>:<keyId>` */
export function keyLabel(scope: string, keyId: string): string {
  return `${LABEL_PREFIX}${scope}:${keyId}`;
}

/** Recovers scope and keyId from a keywarden label; nulls for anything else. */
export function parseKeyLabel(label: string): { scope: string | null; keyId: string | null } {
  if (!label.startsWith(LABEL_PREFIX)) return { scope: null, keyId: null };
  const rest = label.slice(LABEL_PREFIX.length);
  const colon = rest.indexOf(':');
  if (colon <= 0 || colon === rest.length - 1) return { scope: null, keyId: null };
  return { scope: rest.slice(0, colon), keyId: rest.slice(colon + 1) };
}

/**
 * A PKCS#11 CK_DATE as pkcs11js wants it: eight ASCII digits. Never a JS Date in a
 * C_GenerateKeyPair template: pkcs11js can crash the process on one.
 */
export function ckDate(d: Date): Buffer {
  const iso = d.toISOString();
  return Buffer.from(iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10), 'ascii');
}

/** The key type and curve an algorithm needs, as PKCS#11 sees them. */
export function curveFor(alg: SigningAlg): CurveName | null {
  const spec = keySpecFor(alg);
  return spec.kty === 'RSA' ? null : spec.crv;
}

export function keyTypeFor(alg: SigningAlg): number {
  const kty = keySpecFor(alg).kty;
  return kty === 'RSA' ? pkcs11js.CKK_RSA : kty === 'EC' ? pkcs11js.CKK_EC : CKK_EC_EDWARDS;
}

export interface KeyPairTemplates {
  mechanism: Mechanism;
  publicTemplate: Attribute[];
  privateTemplate: Attribute[];
}

export interface TemplateInput {
  alg: SigningAlg;
  rsaBits: RsaModulusBits;
  id: Buffer;
  label: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Templates for a token-resident signing keypair (I3): the private half is private, sensitive,
 * never extractable and can only sign: no decrypt, unwrap, derive or sign-recover, so it serves no
 * other use. Neither half can be modified afterwards, and the private half cannot be copied (a copy
 * could be given other uses). Those three (CKA_MODIFIABLE, CKA_COPYABLE, CKA_SIGN_RECOVER) are
 * `OPTIONAL_HARDENING`: a module that refuses them gets a second attempt without them
 * (`generateWithHardeningFallback`).
 */
export function keyPairTemplates(input: TemplateInput): KeyPairTemplates {
  const keyType = keyTypeFor(input.alg);
  const common: Attribute[] = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_KEY_TYPE, value: keyType },
    { type: pkcs11js.CKA_ID, value: input.id },
    { type: pkcs11js.CKA_LABEL, value: input.label },
    { type: pkcs11js.CKA_START_DATE, value: ckDate(input.notBefore) },
    { type: pkcs11js.CKA_END_DATE, value: ckDate(input.notAfter) },
  ];
  const publicTemplate: Attribute[] = [
    ...common,
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: true },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_WRAP, value: false },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
  ];
  const privateTemplate: Attribute[] = [
    ...common,
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_DECRYPT, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
    { type: pkcs11js.CKA_DERIVE, value: false },
    { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
    { type: pkcs11js.CKA_MODIFIABLE, value: false },
    { type: pkcs11js.CKA_COPYABLE, value: false },
  ];
  const curve = curveFor(input.alg);
  let mechanism: Mechanism;
  if (curve === null) {
    mechanism = { mechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
    publicTemplate.push(
      { type: pkcs11js.CKA_MODULUS_BITS, value: input.rsaBits },
      { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    );
  } else {
    mechanism = {
      mechanism: curve === 'Ed25519' ? CKM_EC_EDWARDS_KEY_PAIR_GEN : pkcs11js.CKM_EC_KEY_PAIR_GEN,
    };
    publicTemplate.push({ type: pkcs11js.CKA_EC_PARAMS, value: EC_PARAMS[curve] });
  }
  return { mechanism, publicTemplate, privateTemplate };
}

/**
 * Hardening attributes a module may not accept in a key generation template: CKA_COPYABLE is
 * PKCS#11 2.40, and some modules refuse CKA_MODIFIABLE=false or CKA_SIGN_RECOVER on key types
 * they do not recover signatures with. Nothing else is ever left out: CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, CKA_EXTRACTABLE=false and the usage flags are mandatory (I3).
 */
export const OPTIONAL_HARDENING: ReadonlyMap<number, string> = new Map([
  [pkcs11js.CKA_MODIFIABLE, 'CKA_MODIFIABLE'],
  [pkcs11js.CKA_COPYABLE, 'CKA_COPYABLE'],
  [pkcs11js.CKA_SIGN_RECOVER, 'CKA_SIGN_RECOVER'],
]);

/** What a module answers when a template holds an attribute (or value) it does not accept. */
export const TEMPLATE_REFUSED_CKRS = [
  'CKR_ATTRIBUTE_TYPE_INVALID',
  'CKR_ATTRIBUTE_VALUE_INVALID',
  'CKR_TEMPLATE_INCONSISTENT',
] as const;

/**
 * The templates without `OPTIONAL_HARDENING`, and the names of the attributes that were left out
 * (sorted; empty when there were none).
 */
export function withoutOptionalHardening(t: KeyPairTemplates): {
  templates: KeyPairTemplates;
  dropped: string[];
} {
  const dropped = new Set<string>();
  const keep = (attrs: Attribute[]): Attribute[] =>
    attrs.filter((a) => {
      const name = OPTIONAL_HARDENING.get(a.type);
      if (name !== undefined) dropped.add(name);
      return name === undefined;
    });
  return {
    templates: {
      mechanism: t.mechanism,
      publicTemplate: keep(t.publicTemplate),
      privateTemplate: keep(t.privateTemplate),
    },
    dropped: [...dropped].sort(),
  };
}

/**
 * Runs `generate` with the full templates and, when the module refuses the template
 * (`TEMPLATE_REFUSED_CKRS`), once more without `OPTIONAL_HARDENING`. `dropped` names what the
 * second attempt left out and `refusal` the module's answer to the first (empty and null when the
 * first one succeeded); the key then carries the module's defaults for those attributes, which
 * `hsm check` reports (modifiable, copyable, can-sign-recover). Any other failure, or a failure of
 * the second attempt, is thrown as it came.
 */
export async function generateWithHardeningFallback<T>(
  t: KeyPairTemplates,
  generate: (templates: KeyPairTemplates) => Promise<T>,
): Promise<{ keyPair: T; dropped: string[]; refusal: string | null }> {
  try {
    return { keyPair: await generate(t), dropped: [], refusal: null };
  } catch (e) {
    const reduced = withoutOptionalHardening(t);
    if (!isCkr(e, ...TEMPLATE_REFUSED_CKRS) || reduced.dropped.length === 0) throw e;
    return { keyPair: await generate(reduced.templates), dropped: reduced.dropped, refusal: e.ckr };
  }
}

/**
 * The mechanism and the bytes to hand the token for a JWS signature. ECDSA is hashed here because
 * SoftHSM (and several HSMs) lack CKM_ECDSA_SHA256/384; CKM_ECDSA then returns raw r||s, which
 * is the JWS encoding. RSA mechanisms hash inside the token; EdDSA signs the message itself.
 */
export function signOperation(
  alg: SigningAlg,
  signingInput: Uint8Array,
): { mechanism: Mechanism; data: Buffer } {
  const input = Buffer.from(signingInput.buffer, signingInput.byteOffset, signingInput.byteLength);
  switch (alg) {
    case 'ES256':
      return {
        mechanism: { mechanism: pkcs11js.CKM_ECDSA },
        data: hash('sha256', input, 'buffer'),
      };
    case 'ES384':
      return {
        mechanism: { mechanism: pkcs11js.CKM_ECDSA },
        data: hash('sha384', input, 'buffer'),
      };
    case 'RS256':
      return { mechanism: { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS }, data: input };
    case 'PS256':
      // Hashed here and signed with plain CKM_RSA_PKCS_PSS, as ECDSA is: p11-kit's RPC (0.24,
      // Debian 12) carries CKM_RSA_PKCS_PSS but not CKM_SHA256_RSA_PKCS_PSS.
      return {
        mechanism: {
          mechanism: pkcs11js.CKM_RSA_PKCS_PSS,
          parameter: {
            type: pkcs11js.CK_PARAMS_RSA_PSS,
            hashAlg: pkcs11js.CKM_SHA256,
            mgf: pkcs11js.CKG_MGF1_SHA256,
            saltLen: 32,
          } as pkcs11js.RsaPSS,
        },
        data: hash('sha256', input, 'buffer'),
      };
    case 'EdDSA':
      return { mechanism: { mechanism: CKM_EDDSA }, data: input };
  }
}

/** Mechanisms keywarden needs per algorithm: what `describeToken` checks a token for. */
export const REQUIRED_MECHANISMS: Readonly<Record<SigningAlg, readonly number[]>> = {
  ES256: [pkcs11js.CKM_EC_KEY_PAIR_GEN, pkcs11js.CKM_ECDSA],
  ES384: [pkcs11js.CKM_EC_KEY_PAIR_GEN, pkcs11js.CKM_ECDSA],
  RS256: [pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11js.CKM_SHA256_RSA_PKCS],
  PS256: [pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11js.CKM_RSA_PKCS_PSS],
  EdDSA: [CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA],
};
