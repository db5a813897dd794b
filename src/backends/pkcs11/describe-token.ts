import type { SigningAlg } from '../../policy/algorithms';
import { SIGNING_ALGS } from '../../policy/algorithms';
import type { Pkcs11BackendConfig } from './config';
import { toKeywardenError } from './ck-error';
import { CKF_TOKEN_PRESENT, Cryptoki, type Handle, type TokenInfo } from './cryptoki';
import { REQUIRED_MECHANISMS } from './key-templates';
import * as pkcs11js from 'pkcs11js';

/** What `keywarden hsm status` prints about a module: no PIN needed, nothing secret. */
export interface ModuleDescription {
  modulePath: string;
  manufacturer: string;
  library: string;
  libraryVersion: string;
  cryptokiVersion: string;
  slots: SlotDescription[];
  /** The slot holding the configured token, when `tokenLabel` was given and found. */
  token: SlotDescription | null;
}

export interface SlotDescription {
  /** Slot id as hex (slot numbers can be large and differ between runs). */
  slotId: string;
  description: string;
  tokenPresent: boolean;
  token: TokenDescription | null;
}

export interface TokenDescription {
  label: string;
  manufacturer: string;
  model: string;
  serialNumber: string;
  initialized: boolean;
  userPinInitialized: boolean;
  userPinLocked: boolean;
  userPinCountLow: boolean;
  loginRequired: boolean;
  writeProtected: boolean;
  sessionCount: number | null;
  maxSessionCount: number | null;
  /** Bytes; null where the token does not report them (CK_UNAVAILABLE_INFORMATION). */
  freePublicMemory: number | null;
  totalPublicMemory: number | null;
  freePrivateMemory: number | null;
  totalPrivateMemory: number | null;
  /** Per algorithm: does the token list every mechanism keywarden needs for it? */
  algorithms: Record<SigningAlg, boolean>;
}

const trim = (s: string): string => s.replace(/\0/g, '').trim();
const ver = (v: { major: number; minor: number }): string => `${v.major}.${v.minor}`;

/**
 * CK_UNAVAILABLE_INFORMATION is ~0 (pkcs11js hands some fields over truncated to 32 bits): such
 * values mean "not reported", not a real count.
 */
function counted(n: number): number | null {
  return Number.isSafeInteger(n) && n < 0xffffffff ? n : null;
}

function describeTokenInfo(ck: Cryptoki, slot: Handle, t: TokenInfo): TokenDescription {
  let mechs: ReadonlySet<number> = new Set();
  try {
    mechs = new Set(ck.mechanisms(slot));
  } catch {
    // A token that cannot list mechanisms supports none as far as `hsm check` is concerned.
  }
  const algorithms = Object.fromEntries(
    SIGNING_ALGS.map((alg) => [alg, REQUIRED_MECHANISMS[alg].every((m) => mechs.has(m))]),
  ) as Record<SigningAlg, boolean>;
  const has = (flag: number): boolean => (t.flags & flag) !== 0;
  return {
    label: trim(t.label),
    manufacturer: trim(t.manufacturerID),
    model: trim(t.model),
    serialNumber: trim(t.serialNumber),
    initialized: has(pkcs11js.CKF_TOKEN_INITIALIZED),
    userPinInitialized: has(pkcs11js.CKF_USER_PIN_INITIALIZED),
    userPinLocked: has(pkcs11js.CKF_USER_PIN_LOCKED),
    userPinCountLow: has(pkcs11js.CKF_USER_PIN_COUNT_LOW),
    loginRequired: has(pkcs11js.CKF_LOGIN_REQUIRED),
    writeProtected: has(pkcs11js.CKF_WRITE_PROTECTED),
    sessionCount: counted(t.sessionCount),
    maxSessionCount: counted(t.maxSessionCount),
    freePublicMemory: counted(t.freePublicMemory),
    totalPublicMemory: counted(t.totalPublicMemory),
    freePrivateMemory: counted(t.freePrivateMemory),
    totalPrivateMemory: counted(t.totalPrivateMemory),
    algorithms,
  };
}

/** Describes a module already opened (used by `Pkcs11Backend.describeToken`). */
export function describeModule(ck: Cryptoki, tokenLabel?: string): ModuleDescription {
  try {
    const info = ck.info();
    const slots: SlotDescription[] = ck.slots(false).map((slot) => {
      const si = ck.slotInfo(slot);
      const tokenPresent = (si.flags & CKF_TOKEN_PRESENT) !== 0;
      return {
        slotId: slot.toString('hex'),
        description: trim(si.slotDescription),
        tokenPresent,
        token: tokenPresent ? describeTokenInfo(ck, slot, ck.tokenInfo(slot)) : null,
      };
    });
    return {
      modulePath: ck.modulePath,
      manufacturer: trim(info.manufacturerID),
      library: trim(info.libraryDescription),
      libraryVersion: ver(info.libraryVersion),
      cryptokiVersion: ver(info.cryptokiVersion),
      slots,
      token: tokenLabel === undefined ? null : (slots.find((s) => s.token?.label === tokenLabel) ?? null),
    };
  } catch (e) {
    throw toKeywardenError(e, `describing module ${ck.modulePath}`);
  }
}

/**
 * Loads the configured module (no PIN, no login) and describes it, its slots and tokens: for
 * `keywarden hsm status` and for diagnosing a backend that will not open.
 */
export function describeToken(
  config: Pick<Pkcs11BackendConfig, 'module' | 'moduleEnv'> & { tokenLabel?: string },
): ModuleDescription {
  const ck = Cryptoki.open(config.module, config.moduleEnv);
  try {
    return describeModule(ck, config.tokenLabel);
  } finally {
    ck.release();
  }
}
