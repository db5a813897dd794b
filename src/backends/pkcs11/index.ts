/** PKCS#11 key backend: public surface. */
export { openPkcs11Backend } from './open-pkcs11-backend';
export { Pkcs11Backend, type Pkcs11BackendOptions } from './pkcs11-backend';
export {
  describeToken,
  type ModuleDescription,
  type SlotDescription,
  type TokenDescription,
} from './describe-token';
export type { TokenObject, TokenObjectAttributes, TokenObjectClass } from './token-objects';
export { LABEL_PREFIX, keyLabel, parseKeyLabel } from './key-templates';
