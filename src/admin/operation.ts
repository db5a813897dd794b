import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import type { Keywarden } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { toWire, type Wire } from './wire';

/**
 * One operator command, implemented once: the admin API's route and the CLI's `--local` run both
 * call `executeOperation`, which validates the input against `input` and runs `run` on the facade.
 * The result is what `--json` prints; the CLI renders its human form from the same value.
 */
export interface AdminOperation<I, R> {
  /** `group.action`, e.g. `keys.rotate`; the route is `POST /admin/v1/keys/rotate`. */
  name: string;
  summary: string;
  /** True when it changes keys, clients or the audit log (recorded with the operator as actor). */
  mutates: boolean;
  /** JSON schema of the input (strict: unknown members and wrong types are refused). */
  input: object;
  run(kw: Keywarden, input: I, actor: string): Promise<R> | R;
}

/** An operation with its types erased, as the route table holds it. */
export type AnyAdminOperation = AdminOperation<never, unknown>;

export function defineOperation<I, R>(op: AdminOperation<I, R>): AdminOperation<I, R> {
  return op;
}

const ajv = new Ajv({
  allErrors: false,
  coerceTypes: false,
  removeAdditional: false,
  useDefaults: false,
  strict: true,
});
const compiled = new WeakMap<object, ValidateFunction>();

function describeError(e: ErrorObject): string {
  const where = e.instancePath === '' ? 'the input' : e.instancePath.slice(1).replace(/\//g, '.');
  const extra = (e.params as { additionalProperty?: string }).additionalProperty;
  return extra !== undefined
    ? `${where} has an unknown member "${extra}"`
    : `${where} ${e.message ?? 'is invalid'}`;
}

/** Validates `input` against the operation's schema and runs it; REQUEST_INVALID names the member at fault. */
export async function executeOperation<I, R>(
  kw: Keywarden,
  op: AdminOperation<I, R>,
  input: unknown,
  actor: string,
): Promise<Wire<R>> {
  let validate = compiled.get(op.input);
  if (!validate) {
    validate = ajv.compile(op.input);
    compiled.set(op.input, validate);
  }
  if (!validate(input)) {
    const first = validate.errors?.[0];
    throw new KeywardenError(
      'REQUEST_INVALID',
      `${op.name}: ${first ? describeError(first) : 'invalid input'}`,
    );
  }
  return toWire(await op.run(kw, input as I, actor));
}
