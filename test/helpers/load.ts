/**
 * A small load generator for e2e tests against a running daemon: `concurrency` loops, each
 * sending one request after the other (round robin over `targets`), over keep-alive connections
 * or a fresh connection per request. It counts what came back, so a test can assert that nothing
 * failed while it reloaded or stopped the daemon. Never a timing: only outcomes.
 */
import { Agent, request } from 'node:http';

export interface LoadTarget {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadOptions {
  baseUrl: string;
  targets: readonly LoadTarget[];
  /** Keep-alive connections (an agent with `concurrency` sockets), or one connection per request. */
  keepAlive: boolean;
  concurrency: number;
}

export interface LoadReport {
  /** 2xx answers. */
  ok: number;
  /**
   * 503 SHUTTING_DOWN with `Connection: close`: the daemon is draining. The loop that got it ends,
   * as a client behind a load balancer is sent elsewhere.
   */
  drained: number;
  /** ECONNREFUSED: nothing listens any more (after a drain). That loop ends too. */
  refused: number;
  /** Anything else: a reset or hang-up, another status, a 503 without `Connection: close`. */
  failures: string[];
}

export interface Load {
  /** Ends every loop after its current request; resolves with the report once all have. */
  stop(): Promise<LoadReport>;
  /** Resolves when every loop has ended by itself (drained or refused) or after stop(). */
  done: Promise<LoadReport>;
  /** The counts so far. */
  report(): LoadReport;
}

interface Outcome {
  kind: 'ok' | 'drained' | 'refused' | 'failure';
  detail?: string;
}

function send(o: LoadOptions, agent: Agent | false, t: LoadTarget): Promise<Outcome> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { ...t.headers };
    if (!o.keepAlive) headers.connection = 'close';
    if (t.body !== undefined) headers['content-type'] = 'application/json';
    const req = request(`${o.baseUrl}${t.path}`, { method: t.method, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('error', (e) =>
        resolve({ kind: 'failure', detail: `${t.method} ${t.path}: response ${e.message}` }),
      );
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve({ kind: 'ok' });
        if (status === 503 && body.includes('"SHUTTING_DOWN"') && res.headers.connection === 'close') {
          return resolve({ kind: 'drained' });
        }
        resolve({
          kind: 'failure',
          detail: `${t.method} ${t.path}: ${status} connection=${res.headers.connection ?? '-'} ${body.slice(0, 200)}`,
        });
      });
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') return resolve({ kind: 'refused' });
      resolve({ kind: 'failure', detail: `${t.method} ${t.path}: ${e.code ?? ''} ${e.message}` });
    });
    req.end(t.body);
  });
}

/** Starts the loops. */
export function startLoad(o: LoadOptions): Load {
  const agent = o.keepAlive ? new Agent({ keepAlive: true, maxSockets: o.concurrency }) : false;
  const report: LoadReport = { ok: 0, drained: 0, refused: 0, failures: [] };
  let stopped = false;
  let next = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const target = o.targets[next++ % o.targets.length]!;
      const outcome = await send(o, agent, target);
      if (outcome.kind === 'failure') report.failures.push(outcome.detail ?? 'failure');
      else report[outcome.kind]++;
      if (outcome.kind === 'drained' || outcome.kind === 'refused') return;
    }
  };
  const done = Promise.all(Array.from({ length: o.concurrency }, loop)).then(() => {
    if (agent) agent.destroy();
    return report;
  });
  return {
    stop() {
      stopped = true;
      return done;
    },
    done,
    report: () => report,
  };
}
