import { randomUUID } from 'node:crypto';
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

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

/**
 * With `serve --workers N` each worker counts only its own requests, and a scrape lands on
 * whichever worker the kernel picks. So a worker answering `/metrics` asks the primary, which
 * collects every worker's registry (prom-client's AggregatorRegistry, over cluster IPC) and
 * answers with the sum. Call in the primary once.
 */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: MetricsRequest) => {
    if (message?.type !== REQUEST) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: RESPONSE, id: message.id, text } satisfies MetricsResponse),
      (e: Error) =>
        worker.send({ type: RESPONSE, id: message.id, error: e.message } satisfies MetricsResponse),
    );
  });
}

/** In a worker: lets the primary collect `registry` (instead of prom-client's global one). */
export function exposeWorkerRegistry(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's worker-side listener for the primary's requests.
  new AggregatorRegistry();
}

/** In a worker: the cluster-wide metrics text, from the primary. */
export function requestClusterMetrics(timeoutMs = 5000): Promise<string> {
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
