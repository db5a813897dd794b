import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './paths';

/** Where the benchmark compiles the project (never dist/, which belongs to the build). */
export const BENCH_DIST = join(REPO_ROOT, '.tmp', 'bench', 'dist');

/**
 * Compiles src/, migrations/ and bench/ with the project's tsconfig into BENCH_DIST, once per
 * benchmark run: keywarden and every yardstick then run as compiled JavaScript, as deployed
 * (bin/keywarden runs dist/), with no TypeScript transform in any measured process. Type errors
 * elsewhere in the tree (work in progress) do not stop the emit; missing output does.
 */
export function ensureCompiled(): void {
  if (process.env.BENCH_COMPILED === '1') return;
  process.stderr.write('compiling into .tmp/bench/dist ...\n');
  // The compiled daemon and relying parties load @keywarden/verify from its own build.
  const pkg = spawnSync(process.execPath, [join(REPO_ROOT, 'packages', 'verify', 'scripts', 'build.mjs')], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
  });
  if (pkg.status !== 0) throw new Error('building packages/verify failed');
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  spawnSync(
    process.execPath,
    [tsc, '-p', 'tsconfig.json', '--outDir', BENCH_DIST, '--declaration', 'false', '--sourceMap', 'false'],
    { cwd: REPO_ROOT, stdio: 'ignore' },
  );
  for (const f of [
    'src/cli/main.ts',
    'bench/servers/ideal-signer.ts',
    'bench/scale-size.ts',
    'bench/lib/memory-backend-preload.ts',
  ]) {
    if (!existsSync(compiled(f))) throw new Error(`compilation produced no ${compiled(f)}`);
  }
  process.env.BENCH_COMPILED = '1';
}

/** The compiled JavaScript of a repository .ts file. */
export function compiled(repoPath: string): string {
  return join(BENCH_DIST, repoPath.replace(/\.ts$/, '.js'));
}
