import type { EntityManager } from 'typeorm';
import { KeywardenError } from '../policy/errors';
import type { LifecycleContext } from './context';

/** One operator action for the audit log. `data` must hold no secret (it is scrubbed anyway). */
export interface OperatorAction {
  /** Dotted name, e.g. `clients.add`, `clients.remove`, `clients.rotate-secret`. */
  action: string;
  /** Who: `cliActor()` from the CLI. */
  actor: string;
  scope?: string | null;
  kid?: string | null;
  data?: Record<string, unknown>;
}

const ACTION = /^[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*){0,3}$/;

/**
 * Records an operator action as `operator.<action>` (I7: every admin action is audited). Pass
 * the EntityManager of the transaction that makes the change so both commit together; without
 * one, the record is written in its own transaction. Key rotation and revocation need no call:
 * they are recorded by the lifecycle with the operator as actor.
 */
export async function recordOperatorAction(
  ctx: Pick<LifecycleContext, 'audit'>,
  action: OperatorAction,
  manager?: EntityManager,
): Promise<void> {
  if (!ACTION.test(action.action) || action.action.length > 50) {
    throw new KeywardenError('INTERNAL', `invalid operator action name "${action.action}"`);
  }
  if (typeof action.actor !== 'string' || action.actor.length === 0) {
    throw new KeywardenError('INTERNAL', 'an operator action needs an actor');
  }
  await ctx.audit.record(
    {
      type: `operator.${action.action}`,
      actor: action.actor,
      scope: action.scope ?? null,
      kid: action.kid ?? null,
      data: action.data ?? {},
    },
    manager,
  );
}
