import * as fs from 'node:fs';
import * as path from 'node:path';

let cached: string | undefined;

/**
 * The installation directory (the one holding keywarden's package.json), found by walking up
 * from this file, so paths work the same from `src/` (tsx) and from `dist/src/` (compiled).
 */
export function installRoot(): string {
  if (cached) return cached;
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (
      fs.existsSync(pkg) &&
      (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'keywarden'
    ) {
      return (cached = dir);
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('keywarden installation root not found');
    dir = parent;
  }
}

export function packageVersion(): string {
  return (
    JSON.parse(fs.readFileSync(path.join(installRoot(), 'package.json'), 'utf8')) as { version: string }
  ).version;
}
