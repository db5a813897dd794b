/**
 * A second keywarden process on a test token, for pkcs11-object-index.test.ts: opens its own
 * backend (its own sessions, handles and object index) and destroys the keys given, or destroys
 * them and generates a new key pair at the same ref (same CKA_ID and label), as a revocation in
 * another daemon or the CLI would. Prints the public JWKs it generated as JSON.
 *
 * argv: destroy|replace, backend config as JSON (with pinValue), refs as JSON.
 */
import { openPkcs11Backend } from '../../src/backends/pkcs11/open-pkcs11-backend';
import type { Pkcs11BackendConfig } from '../../src/backends/pkcs11/config';
import { parseKeyLabel } from '../../src/backends/pkcs11/key-templates';
import type { BackendRef, PublicJwk } from '../../src/policy/key';

async function main(): Promise<void> {
  const [action, config, refs] = process.argv.slice(2) as [string, string, string];
  const backend = await openPkcs11Backend(JSON.parse(config) as Pkcs11BackendConfig & { pinValue: string });
  const made: PublicJwk[] = [];
  try {
    for (const ref of JSON.parse(refs) as BackendRef[]) {
      await backend.destroy(ref);
      if (action !== 'replace') continue;
      const { scope, keyId } = parseKeyLabel(String(ref.ref.label));
      const now = Date.now();
      const generated = await backend.generate(ref, {
        alg: 'ES256',
        scope: String(scope),
        keyId: String(keyId),
        notBefore: new Date(now),
        notAfter: new Date(now + 3.6e6),
      });
      made.push(generated.publicJwk);
    }
  } finally {
    await backend.close();
  }
  process.stdout.write(JSON.stringify(made));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
