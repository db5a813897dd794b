import { sealedGrants } from '../policy/client-seal';
import { KeywardenError } from '../policy/errors';
import type { StoredClient } from '../policy/clients';
import { AUDIT_SCOPE, signingAuditKey } from '../policy/audit-key';
import { sealingAuditKey } from './client-seals';
import type { ClientVerdict } from './client-trust';
import { summary, type ClientSummary } from './clients';
import type { LifecycleContext } from './context';

/** What `keywarden clients seal` is asked to do. */
export interface SealClientsRequest {
  /** Clients by name or id; empty with `all`. */
  clients: readonly string[];
  /** Every client that has no seal, or a seal by an audit key that no longer signs. */
  all: boolean;
  /** Vouch for named rows whose seal does not verify (changed outside keywarden), as they are now. */
  force: boolean;
  /** Say what would be sealed, change nothing. */
  dryRun: boolean;
}

/**
 * - `sealed`: it had no seal (or, with --force, one that did not verify) and now has one;
 * - `resealed`: its seal verified but was made by an audit key that no longer signs;
 * - `already-sealed`: its seal verifies and was made by the current audit key: nothing to do;
 * - `skipped`: not sealed (see `detail`); it stays refused.
 */
export type SealAction = 'sealed' | 'resealed' | 'already-sealed' | 'skipped';

export interface SealedClient extends ClientSummary {
  action: SealAction;
  /** Its trust before: `trusted`, or the refusal reason (policy/client-seal.ts). */
  was: string;
  detail?: string;
}

export interface SealClientsReport {
  dryRun: boolean;
  /** The audit key that sealed (null in a dry run or when nothing needed a seal). */
  kid: string | null;
  clients: SealedClient[];
}

function validate(req: SealClientsRequest): void {
  if (req.all && req.clients.length > 0) {
    throw new KeywardenError('REQUEST_INVALID', 'name clients or use --all, not both');
  }
  if (!req.all && req.clients.length === 0) {
    throw new KeywardenError('REQUEST_INVALID', 'name the clients to seal (by name or id), or use --all');
  }
  if (req.force && req.all) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      '--force vouches for rows that were changed outside keywarden: name them one by one, not with --all',
    );
  }
}

type Plan = { row: StoredClient; verdict: ClientVerdict; action: SealAction; detail?: string };

/**
 * An operator vouches for API client rows: each named client (or, with `all`, every client
 * without a seal or with a seal by an audit key that no longer signs) gets a seal by the current
 * audit key over its content as it is now. This is the upgrade step for clients made before
 * client sealing: the daemon cannot tell such a row from one an attacker wrote into the store,
 * only an operator can, so it never seals an unsealed row on its own. A named row whose seal is
 * present but does not verify was changed outside keywarden: it is sealed only with `force`
 * (CLIENT_UNTRUSTED otherwise), never by `all`. Every problem with the request is found before
 * anything is sealed; nothing changes on error or in a dry run.
 */
export async function sealClients(
  ctx: LifecycleContext,
  req: SealClientsRequest,
  actor: string,
): Promise<SealClientsReport> {
  validate(req);
  const repo = ctx.store.clients;
  const rows = await repo.scan();
  let targets: StoredClient[];
  if (req.all) targets = [...rows].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  else {
    const missing: string[] = [];
    const found = new Map<string, StoredClient>();
    for (const nameOrId of req.clients) {
      const row = rows.find((r) => r.name === nameOrId) ?? rows.find((r) => r.id === nameOrId);
      if (row) found.set(row.id, row);
      else missing.push(nameOrId);
    }
    if (missing.length > 0) {
      throw new KeywardenError(
        'CLIENT_NOT_FOUND',
        `no client named or with id ${missing.map((m) => `"${m}"`).join(', ')}; nothing was sealed`,
      );
    }
    targets = [...found.values()];
  }
  const current = signingAuditKey(await ctx.keys.listByScope(AUDIT_SCOPE), ctx.clock.now())?.kid ?? null;
  const plans: Plan[] = [];
  const untrusted: string[] = [];
  for (const row of targets) {
    const verdict = await ctx.clientTrust.judge(row);
    const plan: Plan = { row, verdict, action: 'sealed' };
    if (verdict.ok) plan.action = verdict.kid === current ? 'already-sealed' : 'resealed';
    else if (verdict.reason === 'backend-unavailable') {
      if (!req.all)
        throw new KeywardenError('BACKEND_UNAVAILABLE', `client "${row.name}": ${verdict.message}`);
      Object.assign(plan, { action: 'skipped', detail: verdict.message });
    } else if (verdict.reason !== 'unsealed' && !req.force) {
      const detail = `its seal does not verify (${verdict.reason}: ${verdict.message})`;
      if (req.all)
        Object.assign(plan, { action: 'skipped', detail: `${detail}; name it with --force to vouch for it` });
      else untrusted.push(`client "${row.name}": ${detail}`);
    }
    if (plan.action === 'sealed' && sealedGrants(row.grants) === null) {
      const detail =
        'its grants are not a JSON object of grant lists (written outside keywarden): remove it and add it again';
      if (req.all) Object.assign(plan, { action: 'skipped', detail });
      else untrusted.push(`client "${row.name}": ${detail}`);
    }
    plans.push(plan);
  }
  if (untrusted.length > 0) {
    throw new KeywardenError(
      'CLIENT_UNTRUSTED',
      `${untrusted.join('; ')}. These rows were changed outside keywarden: check each (keywarden clients show ` +
        'NAME), then remove it, or vouch for it as it is with --force. Nothing was sealed.',
    );
  }
  const report: SealClientsReport = { dryRun: req.dryRun, kid: null, clients: [] };
  const entry = (p: Plan, action: SealAction = p.action, detail = p.detail): SealedClient => ({
    ...summary(p.row),
    action,
    was: p.verdict.ok ? 'trusted' : p.verdict.reason,
    ...(detail === undefined ? {} : { detail }),
  });
  const work = plans.filter((p) => p.action !== 'skipped' && p.action !== 'already-sealed');
  if (req.dryRun || work.length === 0) {
    report.clients = plans.map((p) => entry(p));
    return report;
  }
  const sealer = await sealingAuditKey(ctx, actor);
  report.kid = sealer.kid;
  for (const p of plans) {
    // ensureAuditKey may have renewed the key: a seal by the previous one is then replaced too.
    const needed =
      p.action === 'sealed' || (p.verdict.ok && p.verdict.kid !== sealer.kid && p.action !== 'skipped');
    if (!needed) {
      report.clients.push(entry(p));
      continue;
    }
    const action: SealAction = p.verdict.ok ? 'resealed' : 'sealed';
    if (!(await repo.replaceSeal(p.row.id, p.row.seal, await sealer.seal(p.row)))) {
      report.clients.push(
        entry(p, 'skipped', 'the row changed while it was being sealed: run the command again'),
      );
      continue;
    }
    await ctx.audit.record({
      type: action === 'sealed' ? 'client.sealed' : 'client.resealed',
      actor,
      data: {
        clientId: p.row.id,
        name: p.row.name,
        grants: sealedGrants(p.row.grants),
        kid: sealer.kid,
        was: p.verdict.ok ? `sealed by ${p.verdict.kid}` : p.verdict.reason,
      },
    });
    report.clients.push(entry(p, action));
  }
  return report;
}
