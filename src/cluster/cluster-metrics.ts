import { randomUUID } from 'node:crypto';
import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry, type RegistryContentType } from 'prom-client';
import { collectProcessMetrics } from '../http/process-metrics';

const REQUEST = 'keywarden:metrics-request';
const RESPONSE = 'keywarden:metrics-response';

interface MetricsRequest {
  type: typeof REQUEST;
  id: string;
}
interface MetricsResponse {
  type: typeof RESPONSE;
  id: string;
  text?: string;
  error?: string;
}

/** Prefix of the primary's own process metrics, so they never clash with the workers' sum. */
export const PRIMARY_PROCESS_METRICS_PREFIX = 'keywarden_primary_';

/**
 * The primary's own metrics: `registries` (the key lifecycle's, since the primary runs the
 * scheduler) plus its process and Node.js metrics under `keywarden_primary_` (the unprefixed
 * `process_*`/`nodejs_*` are the workers' sum). Merging throws at start if two of them share a
 * name; the lifecycle's names are distinct from the token service's the workers export (a test
 * checks both).
 */
export function primaryMetricsRegistry(registries: readonly Registry[]): Registry {
  const own = new Registry();
  collectProcessMetrics(own, PRIMARY_PROCESS_METRICS_PREFIX);
  return Registry.merge([...registries, own]);
}

/**
 * With `serve --workers N` each worker counts only its own requests, and a scrape lands on
 * whichever worker the kernel picks. So a worker answering `/metrics` asks the primary, which
 * collects every worker's registry (prom-client's AggregatorRegistry, over cluster IPC), sums
 * them, and appends its own metrics (`primary`, see primaryMetricsRegistry). Call in the
 * primary once.
 */
export function serveClusterMetrics(primary: Registry, log: Logger): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: MetricsRequest) => {
    if (message?.type !== REQUEST) return;
    const reply = (m: MetricsResponse) => {
      // A worker that died meanwhile has no channel to answer on.
      if (worker.isConnected()) worker.send(m);
    };
    clusterMetricsText(aggregator, primary, log).then(
      (text) => reply({ type: RESPONSE, id: message.id, text }),
      (e: Error) => reply({ type: RESPONSE, id: message.id, error: e.message }),
    );
  });
}

/**
 * The workers' sum followed by the primary's metrics. Their names are disjoint, so the text is
 * valid exposition format (each family's HELP/TYPE once). When one half cannot be collected (a
 * worker that does not answer, a failing collector) the scrape still gets the other half.
 */
async function clusterMetricsText(
  aggregator: AggregatorRegistry<RegistryContentType>,
  primary: Registry,
  log: Logger,
): Promise<string> {
  const [workers, own] = await Promise.allSettled([aggregator.clusterMetrics(), primary.metrics()]);
  if (workers.status === 'rejected') {
    log.warn({ err: (workers.reason as Error).message }, "metrics: cannot collect the workers' metrics");
  }
  if (own.status === 'rejected') {
    log.warn({ err: (own.reason as Error).message }, "metrics: cannot collect the primary's metrics");
  }
  const parts = [workers, own].flatMap((r) => (r.status === 'fulfilled' && r.value !== '' ? [r.value] : []));
  if (parts.length === 0 && workers.status === 'rejected') throw workers.reason as Error;
  // prom-client ends its text with a newline; make sure of it before appending the next part.
  return parts.map((t) => (t.endsWith('\n') ? t : `${t}\n`)).join('');
}

/** In a worker: lets the primary collect `registry` (instead of prom-client's global one). */
export function exposeWorkerRegistry(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's worker-side listener for the primary's requests.
  new AggregatorRegistry();
}

/**
 * In a worker: the cluster-wide metrics text, from the primary. The default wait outlasts
 * prom-client's 5 s collection timeout in the primary, so when another worker does not answer
 * the primary's partial answer (its own metrics) still arrives here.
 */
export function requestClusterMetrics(timeoutMs = 8000): Promise<string> {
  return new Promise((resolve, reject) => {
    const id = randomUUID();
    const onMessage = (m: MetricsResponse) => {
      if (m?.type !== RESPONSE || m.id !== id) return;
      clearTimeout(timer);
      process.off('message', onMessage);
      if (m.text !== undefined) resolve(m.text);
      else reject(new Error(`cluster metrics: ${m.error ?? 'no answer'}`));
    };
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('cluster metrics: the primary did not answer'));
    }, timeoutMs);
    process.on('message', onMessage);
    process.send?.({ type: REQUEST, id } satisfies MetricsRequest);
  });
}
