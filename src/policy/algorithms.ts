/**
 * The JWS algorithms and their key parameters: one definition, in the verify package the daemon
 * and relying parties share (a key keywarden makes is exactly a key the library accepts).
 */
export { SIGNING_ALGS, isSigningAlg, keySpecFor } from '@keywarden/verify';
export type { KeySpec, SigningAlg } from '@keywarden/verify';

export const RSA_MODULUS_BITS = [2048, 3072] as const;
export type RsaModulusBits = (typeof RSA_MODULUS_BITS)[number];
