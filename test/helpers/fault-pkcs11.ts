/**
 * A real fault-injecting PKCS#11 module (test/helpers/fault-pkcs11/fault-pkcs11.c): it forwards
 * every call to SoftHSM2's module and fails the calls a control file names, with the CK_RV named
 * there, without forwarding them. The harness compiles it with gcc against the PKCS#11 headers
 * pkcs11js ships (scripts/install-deps.sh --test installs gcc), once per source version.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { SoftHsmToken } from './softhsm';

const run = promisify(execFile);
const SOURCE = resolve(__dirname, 'fault-pkcs11', 'fault-pkcs11.c');
const HEADERS = resolve(__dirname, '..', '..', 'node_modules', 'pkcs11js', 'includes', 'pkcs11');

/** One rule of the control file: fail `fn` (or every wrapped function: `*`) with `rv`, `count` times (default: always). */
export interface Fault {
  fn: string;
  rv: string;
  count?: number;
}

export interface FaultModule {
  /** The shim: a backend's `module`. */
  modulePath: string;
  /** The backend's `moduleEnv`: the token's SOFTHSM2_CONF plus the shim's settings. */
  moduleEnv: Record<string, string>;
  /** Replaces the rules (atomically: the shim never reads a half-written file). */
  inject(faults: Fault[]): Promise<void>;
  /** Removes every rule. */
  clear(): Promise<void>;
  /** The faults the shim injected so far, `<function> 0x<rv>` each. */
  hits(): Promise<string[]>;
  cleanup(): Promise<void>;
}

/** Compiles the shim (cached by source hash under the temp dir) and returns its path. */
export async function buildFaultModule(): Promise<string> {
  const source = readFileSync(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const out = join(tmpdir(), 'keywarden-fault-pkcs11', `fault-pkcs11-${hash}.so`);
  if (existsSync(out)) return out;
  await mkdir(dirname(out), { recursive: true });
  const partial = `${out}.${process.pid}.tmp`;
  try {
    await run('gcc', [
      '-shared',
      '-fPIC',
      '-O2',
      '-Wall',
      '-Werror',
      '-I',
      HEADERS,
      '-o',
      partial,
      SOURCE,
      '-ldl',
      '-lpthread',
    ]);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new Error(
        'gcc not found: run scripts/install-deps.sh --test (or apt-get install gcc libc6-dev)',
        {
          cause: e,
        },
      );
    }
    throw new Error(`compiling the fault-injecting PKCS#11 module failed: ${err.stderr ?? err.message}`, {
      cause: e,
    });
  }
  await rename(partial, out);
  return out;
}

/** The shim in front of `token`'s SoftHSM2 module, with a control file of its own. */
export async function createFaultModule(token: SoftHsmToken): Promise<FaultModule> {
  const modulePath = await buildFaultModule();
  const dir = await mkdtemp(join(tmpdir(), 'keywarden-faults-'));
  const control = join(dir, 'faults');
  const log = join(dir, 'hits');
  let version = 0;
  const write = async (text: string) => {
    const tmp = `${control}.${(version += 1)}`;
    await writeFile(tmp, text);
    await rename(tmp, control);
  };
  await write('');
  return {
    modulePath,
    moduleEnv: {
      ...token.env,
      KEYWARDEN_FAULT_MODULE: token.modulePath,
      KEYWARDEN_FAULT_FILE: control,
      KEYWARDEN_FAULT_LOG: log,
    },
    inject: (faults) =>
      write(faults.map((f) => `${f.fn} ${f.rv}${f.count === undefined ? '' : ` ${f.count}`}\n`).join('')),
    clear: () => write(''),
    async hits() {
      const text = await readFile(log, 'utf8').catch(() => '');
      return text.split('\n').filter((l) => l !== '');
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
