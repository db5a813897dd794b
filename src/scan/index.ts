/**
 * keywarden's leak scanner engine (DESIGN.md I4): finds private-key material, above all of
 * keys keywarden manages, in files and memory dumps. The CLI (`keywarden scan`) and the
 * lifecycle use case that revokes what it finds are built on `scanPaths`.
 */
export { scanPaths, unreadablePaths, DEFAULT_CHUNK_BYTES } from './scan-paths';
export type { Encoding, Finding, KnownKey, ScanOptions, ScanProgress, ScanResult } from './types';
