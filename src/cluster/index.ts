/** Multi-process serving: `keywarden serve --workers N` (node:cluster). */
export { WorkerSupervisor } from './supervisor';
export type { SupervisorOptions } from './supervisor';
export { RestartBackoff, DEFAULT_RESTART_BACKOFF } from './restart-backoff';
export type { RestartBackoffOptions } from './restart-backoff';
export { defaultWorkerCount, parseWorkerCount, MAX_WORKERS } from './worker-count';
export { maxBackendConcurrency, threadPoolSizeFor } from './thread-pool';
export { workerResponseHeaders, workerSlot, WORKER_HEADER, WORKER_SLOT_ENV } from './worker-identity';
