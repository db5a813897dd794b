import { KeywardenError } from '../policy/errors';
import { effectiveState, isPublished } from '../policy/key-state';
import {
  scanPaths,
  unreadablePaths,
  type Finding,
  type KnownKey,
  type ScanProgress,
  type ScanResult,
} from '../scan';
import type { LifecycleContext } from './context';
import { revokeKey, type RevokeResult } from './revoke-key';

export interface ScanForLeaksOptions {
  allPrivateKeys?: boolean;
  /** Revoke every matched key that is still published (I4), with the finding as the reason. */
  revoke?: boolean;
  actor: string;
  onProgress?: (p: ScanProgress) => void;
}

export interface ScanForLeaksResult extends ScanResult {
  revoked: { kid: string; scope: string; replacementKid: string | null }[];
  /** Matched keys that could not be revoked (already expired/revoked, or not a token scope). */
  notRevoked: { kid: string; reason: string }[];
}

/**
 * `keywarden scan` (I4): looks for the private half of every key the store has ever held, in
 * every scope (rows are kept after destruction for exactly this), and optionally revokes the
 * ones still published. Findings carry offsets and fingerprints, never private bytes.
 */
export async function scanForLeaks(
  ctx: LifecycleContext,
  paths: string[],
  opts: ScanForLeaksOptions,
): Promise<ScanForLeaksResult> {
  // A path that cannot be read at all is bad input: refused before anything is scanned or recorded.
  const unreadable = await unreadablePaths(paths);
  if (unreadable.length > 0) {
    throw new KeywardenError('SCAN_ERROR', unreadable.map((e) => `${e.file}: ${e.message}`).join('; '));
  }
  const now = ctx.clock.now();
  const knownKeys: KnownKey[] = (await ctx.keys.listAll())
    .filter((k) => k.kid !== null && k.publicJwk !== null)
    .map((k) => ({
      kid: k.kid as string,
      scope: k.scope,
      state: effectiveState(k, now),
      publicJwk: k.publicJwk!,
    }));
  const result = await scanPaths(paths, {
    knownKeys,
    allPrivateKeys: opts.allPrivateKeys ?? false,
    onProgress: opts.onProgress,
  });
  await ctx.audit.record({
    type: 'scan.completed',
    actor: opts.actor,
    data: {
      paths,
      bytesScanned: result.bytesScanned,
      files: result.files,
      findings: result.findings.map(({ file, offset, encoding, fingerprint, match }) => ({
        file,
        offset,
        encoding,
        fingerprint,
        kid: match?.kid ?? null,
      })),
    },
  });
  const revoked: ScanForLeaksResult['revoked'] = [];
  const notRevoked: ScanForLeaksResult['notRevoked'] = [];
  if (opts.revoke) {
    const firstFinding = new Map<string, Finding>();
    for (const f of result.findings)
      if (f.match && !firstFinding.has(f.match.kid)) firstFinding.set(f.match.kid, f);
    for (const [kid, f] of firstFinding) {
      const key = await ctx.keys.findByKid(kid);
      if (!key || !isPublished(effectiveState(key, ctx.clock.now()))) {
        notRevoked.push({
          kid,
          reason: `not published (${key ? effectiveState(key, ctx.clock.now()) : 'unknown'})`,
        });
        continue;
      }
      if (!ctx.config.scopes.some((s) => s.name === key.scope)) {
        notRevoked.push({ kid, reason: `scope ${key.scope} is not a configured token scope` });
        continue;
      }
      const r: RevokeResult = await revokeKey(
        ctx,
        kid,
        `private key material found by scan in ${f.file} at offset ${f.offset} (${f.encoding})`,
        opts.actor,
      );
      revoked.push({ kid, scope: key.scope, replacementKid: r.replacement?.kid ?? null });
    }
  }
  return { ...result, revoked, notRevoked };
}
