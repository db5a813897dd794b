import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { KeywardenError } from '../policy/errors';
import { HTTP_STATUS } from './error-status';

/** Body of every error response: `{ error: { code, message } }`. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/**
 * One error handler for the whole server: KeywardenErrors map to their status; fastify's own
 * errors (bad JSON, wrong content type, body too large) keep their 4xx status under a
 * REQUEST_INVALID code; anything else is a 500 whose details go to the log, not the client.
 * Logged here with the request's id and route (fastify's own request logger is off).
 */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  const about = (req: FastifyRequest) => ({ reqId: req.id, method: req.method, route: req.routeOptions.url });
  app.setErrorHandler((err: FastifyError | KeywardenError | Error, req, reply) => {
    if (err instanceof KeywardenError) {
      const status = HTTP_STATUS[err.code];
      if (status >= 500) log.warn({ ...about(req), code: err.code, err: err.message }, 'request failed');
      return reply
        .status(status)
        .send({ error: { code: err.code, message: err.message } } satisfies ErrorBody);
    }
    const fe = err as FastifyError;
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply
        .status(fe.statusCode)
        .send({ error: { code: 'REQUEST_INVALID', message: fe.message } } satisfies ErrorBody);
    }
    log.error({ ...about(req), err: err.message, stack: err.stack }, 'unexpected error');
    return reply
      .status(500)
      .send({ error: { code: 'INTERNAL', message: 'internal error' } } satisfies ErrorBody);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({
      error: { code: 'REQUEST_INVALID', message: `no route ${req.method} ${req.url}` },
    } satisfies ErrorBody),
  );
}
