import type { FastifyRequest, RouteOptions } from 'fastify';
import type { Logger } from 'pino';
import {
  ADMIN_OPERATIONS,
  adminPath,
  executeOperation,
  operatorActor,
  type AnyAdminOperation,
  type Operator,
} from '../admin';
import type { Keywarden } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import type { RouteGroup } from './routes';

/**
 * Who is asking, as the listener's transport establishes it: on the unix socket the OS user the
 * client claims (the socket's permissions admitted it); on a TLS listener, the subject of a
 * verified operator certificate. Throws a KeywardenError (e.g. UNAUTHENTICATED) to refuse.
 */
export type OperatorResolver = (req: FastifyRequest) => Operator;

export interface AdminRouteDeps {
  /** The facade operations run on now: a reload (SIGHUP) puts a new one in its place. */
  facade: () => Keywarden;
  resolveOperator: OperatorResolver;
  /** Where every admin request is logged with its operator. */
  log: Logger;
}

const operators = new WeakMap<FastifyRequest, Operator>();

/**
 * The admin API (docs/api.md "Admin API"): one `POST /admin/v1/<group>/<action>` per operator
 * command, each running the same operation the CLI's `--local` runs. A group of its own, so it
 * mounts on any listener whose transport can name the operator: the admin socket today, a TLS
 * listener with operator certificates next. Never on the public listener without that.
 */
export function adminRouteGroup(d: AdminRouteDeps): RouteGroup {
  return {
    name: 'admin',
    setup(api) {
      // JSON bodies only (415 otherwise), like the token routes.
      api.removeContentTypeParser('text/plain');
      api.addHook('onRequest', async (req) => {
        operators.set(req, d.resolveOperator(req));
      });
    },
    routes: ADMIN_OPERATIONS.map((op) => adminRoute(d, op)),
  };
}

function adminRoute(d: AdminRouteDeps, op: AnyAdminOperation): RouteOptions {
  return {
    method: 'POST',
    url: adminPath(op.name),
    handler: async (req, reply) => {
      const operator = operators.get(req);
      if (!operator) throw new KeywardenError('UNAUTHENTICATED', 'no operator identity for this request');
      const actor = operatorActor(operator);
      const about = { operator: actor, transport: operator.transport, op: op.name, reqId: req.id };
      try {
        const result = await executeOperation(d.facade(), op, req.body, actor);
        d.log.info({ ...about, mutates: op.mutates }, 'admin request');
        // Answers carry client secrets and key details: never cached.
        reply.header('cache-control', 'no-store');
        return result;
      } catch (e) {
        d.log.warn({ ...about, code: (e as KeywardenError).code ?? 'INTERNAL' }, 'admin request failed');
        throw e;
      }
    },
  };
}
