/**
 * `node -r tsx/cjs bench/scale-config-load.ts [N]`: loads a config whose N tenant scopes (default
 * 100,000) come from one scope template and a tenants file, three times in one process, and prints
 * each load's time and the process's RSS growth. What `serve` and every reload spend on the file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config/load-config';

const n = Number(process.argv[2] ?? 100_000);
const dir = mkdtempSync(join(tmpdir(), 'kw-config-load-'));
try {
  writeFileSync(
    join(dir, 'tenants.txt'),
    Array.from({ length: n }, (_, i) => `t${String(i).padStart(6, '0')}`).join('\n'),
  );
  writeFileSync(
    join(dir, 'keywarden.yaml'),
    [
      'backends:',
      '  hsm: {type: pkcs11, module: /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so, tokenLabel: t, pin: {env: P}}',
      'scopeTemplates:',
      '  - name: tenants',
      "    namePattern: 'tenant-{tenant}'",
      "    issuer: 'https://id.example.com/t/{tenant}'",
      "    audiences: ['api://{tenant}']",
      '    alg: ES256',
      '    backend: hsm',
      '    policy: {prepublish: 10m, activeFor: 1d, verifyGrace: 1h, maxTokenTtl: 15m, destroyAfter: 1d, maxKeyLifetime: 2d}',
      '    tenantsFile: tenants.txt',
      '',
    ].join('\n'),
  );
  const rss0 = process.memoryUsage().rss;
  for (let round = 1; round <= 3; round++) {
    const t = performance.now();
    const c = loadConfig(join(dir, 'keywarden.yaml'), {});
    const msTaken = performance.now() - t;
    const rss = (process.memoryUsage().rss - rss0) / 2 ** 20;
    process.stdout.write(
      `load ${round}: ${c.scopes.length} scopes in ${msTaken.toFixed(0)} ms, RSS +${rss.toFixed(0)} MiB\n`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
