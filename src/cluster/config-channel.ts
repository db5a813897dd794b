/**
 * Messages between the cluster primary and its workers about the config (node:cluster IPC). The
 * primary owns the running config: a worker asks it for the config text at start (so a worker
 * restarted after a reload runs what the others run, not whatever the file holds by then), and is
 * told to apply a new text on reload. Workers validate the text with the same loader as the
 * primary, so the running config is always the content of one file.
 */

/**
 * The config as the primary runs it: the file's text, its path, the tenants files' texts it read
 * (by absolute path), and a number raised per reload.
 */
export interface ConfigText {
  text: string;
  source: string;
  files: Readonly<Record<string, string>>;
  version: number;
}

export const CONFIG_REQUEST = 'keywarden:config-request';
export const CONFIG_REPLY = 'keywarden:config';
export const WORKER_READY = 'keywarden:worker-ready';
export const WORKER_LISTEN_FAILED = 'keywarden:listen-failed';
export const RELOAD = 'keywarden:reload';
export const RELOAD_RESULT = 'keywarden:reload-result';

export type ConfigRequest = { type: typeof CONFIG_REQUEST };
export type ConfigReply = { type: typeof CONFIG_REPLY } & ConfigText;
/** A worker listens and serves `version`. */
export type WorkerReady = { type: typeof WORKER_READY; version: number };
/** A worker could not listen (LISTEN_FAILED's message); it exits next. */
export type WorkerListenFailed = { type: typeof WORKER_LISTEN_FAILED; message: string };
export type Reload = { type: typeof RELOAD } & ConfigText;
export type ReloadResult = { type: typeof RELOAD_RESULT; version: number; ok: boolean; error?: string };

export type WorkerMessage = ConfigRequest | WorkerReady | WorkerListenFailed | ReloadResult;
export type PrimaryMessage = ConfigReply | Reload;

/** `m` if it is one of ours with that type (IPC also carries prom-client's and node's own). */
export function isMessage<T extends { type: string }>(m: unknown, type: T['type']): m is T {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;
}

/** Exit status of a worker that could not listen (the CLI's LISTEN_FAILED status). */
export const LISTEN_FAILED_EXIT = 8;

/** In a worker: asks the primary for the running config. */
export function requestConfig(timeoutMs = 30_000): Promise<ConfigText> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      if (!isMessage<ConfigReply>(m, CONFIG_REPLY)) return;
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve({ text: m.text, source: m.source, files: m.files, version: m.version });
    };
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('the cluster primary did not send the config'));
    }, timeoutMs);
    process.on('message', onMessage);
    sendToPrimary({ type: CONFIG_REQUEST });
  });
}

/** In a worker: a message to the primary (nothing when the channel is gone: the worker exits anyway). */
export function sendToPrimary(m: WorkerMessage): void {
  if (process.connected) process.send?.(m);
}
