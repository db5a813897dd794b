import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** A regular file to scan. */
export interface FileEntry {
  file: string;
  size: number;
}

/**
 * Expands files and directories (recursively, in name order) into regular files. Symbolic
 * links to files are followed; links to directories are not (no loops, no escaping the tree
 * the operator named). Unreadable entries become errors, not failures of the whole scan.
 */
export async function listFiles(paths: readonly string[]): Promise<{
  files: FileEntry[];
  errors: { file: string; message: string }[];
}> {
  const files: FileEntry[] = [];
  const errors: { file: string; message: string }[] = [];
  const seen = new Set<string>();

  async function visit(path: string, followDirectory: boolean): Promise<void> {
    let info;
    try {
      info = await stat(path);
    } catch (e) {
      errors.push({ file: path, message: messageOf(e) });
      return;
    }
    if (info.isFile()) {
      if (!seen.has(path)) files.push({ file: path, size: info.size });
      seen.add(path);
      return;
    }
    if (!info.isDirectory()) {
      errors.push({ file: path, message: 'not a regular file or directory' });
      return;
    }
    if (!followDirectory) return;
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (e) {
      errors.push({ file: path, message: messageOf(e) });
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) await visit(child, true);
      else if (entry.isFile()) await visit(child, false);
      else if (entry.isSymbolicLink()) await visit(child, false);
    }
  }

  for (const p of paths) await visit(p, true);
  return { files, errors };
}

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
