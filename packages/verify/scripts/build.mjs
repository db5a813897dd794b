// Builds the two entry points from one source: CommonJS (dist/cjs) and ES modules (dist/esm),
// each with its declarations and a package.json naming its module type, so Node loads each file
// as what it is whatever the importer is. Uses the TypeScript compiler of the workspace root.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
const dist = join(root, 'dist');
rmSync(dist, { recursive: true, force: true });
const builds = [
  { dir: 'cjs', type: 'commonjs', args: ['--module', 'commonjs', '--moduleResolution', 'node10'] },
  { dir: 'esm', type: 'module', args: ['--module', 'es2022', '--moduleResolution', 'bundler'] },
];
for (const b of builds) {
  execFileSync(
    process.execPath,
    [tsc, '-p', join(root, 'tsconfig.json'), '--outDir', join(dist, b.dir), ...b.args],
    {
      stdio: 'inherit',
    },
  );
  mkdirSync(join(dist, b.dir), { recursive: true });
  writeFileSync(join(dist, b.dir, 'package.json'), `${JSON.stringify({ type: b.type })}\n`);
}
