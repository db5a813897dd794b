import type { ChainedRecord } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { defineOperation } from './operation';
import { NO_INPUT, flag, integer, list, object, text } from './schema';

/** A record as operators see it: `at` as ISO; signatures stay in `data`. */
function printable(r: ChainedRecord) {
  return {
    seq: r.seq,
    at: r.at.toISOString(),
    type: r.type,
    actor: r.actor,
    scope: r.scope,
    kid: r.kid,
    data: r.data,
    hash: r.hash,
  };
}

export const auditTail = defineOperation({
  name: 'audit.tail',
  summary: 'the newest audit records (oldest first)',
  mutates: false,
  input: object({ scope: text(), kid: text(), type: text(), limit: integer(1, 10_000) }),
  async run(kw, input: { scope?: string; kid?: string; type?: string; limit?: number }) {
    return (await kw.auditTail(input)).map(printable);
  },
});

export const auditVerify = defineOperation({
  name: 'audit.verify',
  summary: 'walk the chain and every signature; report the first break',
  mutates: false,
  input: object({
    online: flag,
    trustKids: list(text()),
    witnesses: list(
      object(
        { seq: integer(0, Number.MAX_SAFE_INTEGER), hash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
        ['seq', 'hash'],
      ),
    ),
  }),
  run(kw, input: { online?: boolean; trustKids?: string[]; witnesses?: { seq: number; hash: string }[] }) {
    return kw.verifyAudit({
      online: input.online ?? true,
      trustKids: input.trustKids ?? [],
      witnesses: input.witnesses ?? [],
    });
  },
});

export const auditCheckpoint = defineOperation({
  name: 'audit.checkpoint',
  summary: 'sign a checkpoint over the chain head now',
  mutates: true,
  input: NO_INPUT,
  run: (kw) => kw.checkpointAudit({ force: true }),
});

const ISO_DATE = '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?)?$';

export const auditPrune = defineOperation({
  name: 'audit.prune',
  summary: 'remove the oldest records before a date (`before`, ISO) or older than `olderThanSeconds`',
  mutates: true,
  input: object({
    before: { type: 'string', pattern: ISO_DATE, maxLength: 64 },
    olderThanSeconds: integer(0, 100 * 366 * 86400),
  }),
  async run(kw, input: { before?: string; olderThanSeconds?: number }, actor) {
    if ((input.before === undefined) === (input.olderThanSeconds === undefined)) {
      throw new KeywardenError(
        'REQUEST_INVALID',
        'audit.prune: give exactly one of before and olderThanSeconds',
      );
    }
    const before =
      input.before !== undefined
        ? new Date(input.before)
        : new Date(kw.clock.now().getTime() - input.olderThanSeconds! * 1000);
    if (Number.isNaN(before.getTime())) {
      throw new KeywardenError('REQUEST_INVALID', `audit.prune: before is not a date: ${input.before}`);
    }
    return { ...(await kw.pruneAudit(before, actor)), before };
  },
});
