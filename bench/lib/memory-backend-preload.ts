/**
 * Preloaded (`node --require`) into a `keywarden serve` child of the scale benchmark: every PKCS#11
 * backend the daemon opens is a MemoryBackend holding the key objects the benchmark made in its
 * own process (KEYWARDEN_BENCH_MEMORY_KEYS: the file MemoryBackend.exportObjects wrote). The
 * daemon then runs as deployed (config load, integrity checks, scheduler, front server, workers)
 * at 100,000 scopes without 100,000 SoftHSM2 objects, which SoftHSM2 cannot hold in useful time,
 * and its RSS is the daemon's own, not the benchmark's. BENCHMARK ONLY.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { pkcs11BackendType } from '../../src/backends/pkcs11/type';
import { MemoryBackend } from '../../test/helpers/fakes';

const file = process.env.KEYWARDEN_BENCH_MEMORY_KEYS;
if (!file) throw new Error('memory-backend-preload: KEYWARDEN_BENCH_MEMORY_KEYS is not set');

pkcs11BackendType.open = async (config) => {
  const backend = new MemoryBackend(config.name);
  // Read at each open, not kept: the file's text would sit in the daemon's heap (70 MiB at 100,000).
  backend.importObjects(readFileSync(file, 'utf8'));
  return backend;
};

// KEYWARDEN_BENCH_MEMORY_USAGE=FILE: the daemon's process.memoryUsage() every 2 s (JS heap against
// RSS: what a scope costs on the heap and beside it).
const usageFile = process.env.KEYWARDEN_BENCH_MEMORY_USAGE;
if (usageFile) {
  setInterval(() => {
    appendFileSync(usageFile, `${JSON.stringify({ at: Date.now(), ...process.memoryUsage() })}\n`);
  }, 2000).unref();
}
