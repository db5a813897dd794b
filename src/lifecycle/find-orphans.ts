import type { BackendObject } from '../backends/key-backend';
import type { LifecycleContext } from './context';

/** What one orphan scan of one backend found. */
export interface OrphanScanReport {
  backend: string;
  /** Objects with keywarden's label whose key row does not exist (all of them, every scan). */
  orphans: BackendObject[];
  /** How many of them this process had not reported before (each got a warning and an audit record). */
  newlyReported: number;
  /** Set when the backend could not be listed; the scan of the others goes on. */
  error?: string;
}

/** Objects reported by this process, so a daily hour-by-hour scan does not flood the audit log. */
const reportedInThisProcess = new Set<string>();

function objectKey(o: BackendObject): string {
  return `${o.ref.backend}|${JSON.stringify(o.ref.ref)}|${o.kind}|${o.label}`;
}

/**
 * Finds backend objects that carry keywarden's label but have no key row (DESIGN.md §4):
 * left by a store restored from an old backup, rows deleted by hand, or another installation
 * sharing the token. They are REPORTED, never deleted: an object nobody can account for may be
 * evidence, or another installation's live key. Each is logged as a warning and recorded as an
 * audit event `backend.orphan-found` once per object per process.
 *
 * Race-free without the scope lock because generation writes the row before the object and
 * cleanup destroys the object before the row: listing the objects first and reading the rows
 * after means every object found was already accounted for unless its row is really gone; a
 * candidate is re-checked with `exists()` in case it was cleaned up in between.
 */
export async function findOrphans(
  ctx: LifecycleContext,
  opts: { actor?: string; reported?: Set<string>; backends?: string[] } = {},
): Promise<OrphanScanReport[]> {
  const reported = opts.reported ?? reportedInThisProcess;
  const actor = opts.actor ?? 'scheduler';
  const names = opts.backends ?? Object.keys(ctx.config.backends);
  const reports: OrphanScanReport[] = [];
  for (const name of names) {
    try {
      reports.push(await scanBackend(ctx, name, actor, reported));
    } catch (e) {
      const error = (e as Error).message;
      ctx.log.warn({ backend: name, err: error }, 'orphan scan of backend failed; retried at the next scan');
      reports.push({ backend: name, orphans: [], newlyReported: 0, error });
    }
  }
  return reports;
}

async function scanBackend(
  ctx: LifecycleContext,
  name: string,
  actor: string,
  reported: Set<string>,
): Promise<OrphanScanReport> {
  const backend = await ctx.backend(name);
  const objects = await backend.list();
  // Rows are read after the listing (see above); destroyed keys keep their rows.
  const rowIds = new Set((await ctx.keys.listAll()).map((k) => k.id));
  const orphans: BackendObject[] = [];
  for (const o of objects) {
    if (o.keyId !== null && rowIds.has(o.keyId)) continue;
    if (!(await backend.exists(o.ref).catch(() => true))) continue;
    orphans.push(o);
  }
  let newlyReported = 0;
  for (const o of orphans) {
    const key = objectKey(o);
    if (reported.has(key)) continue;
    await ctx.audit.record({
      type: 'backend.orphan-found',
      actor,
      scope: o.scope,
      data: { backend: name, label: o.label, keyId: o.keyId, kind: o.kind, ref: o.ref.ref },
    });
    reported.add(key);
    newlyReported++;
    ctx.log.warn(
      { backend: name, label: o.label, keyId: o.keyId, kind: o.kind },
      'orphan backend object: keywarden label but no key row (reported, not deleted)',
    );
  }
  if (orphans.length > 0) {
    ctx.log.warn({ backend: name, orphans: orphans.length }, 'orphan backend objects present');
  }
  return { backend: name, orphans, newlyReported };
}
