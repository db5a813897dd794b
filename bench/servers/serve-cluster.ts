import cluster from 'node:cluster';

/** Reads the yardstick's config (JSON in BENCH_SERVER_CONFIG). */
export function serverConfig<T>(): T & { port: number; workers: number } {
  const raw = process.env.BENCH_SERVER_CONFIG;
  if (!raw) throw new Error('BENCH_SERVER_CONFIG is not set');
  return JSON.parse(raw) as T & { port: number; workers: number };
}

/**
 * Runs `listen` in this process (workers = 1) or in N node:cluster workers sharing the port,
 * the same way `keywarden serve --workers N` does, and prints READY once every process listens.
 * SIGTERM stops everything.
 */
export async function serveCluster(workers: number, listen: () => Promise<void>): Promise<void> {
  if (workers <= 1 || cluster.isWorker) {
    process.on('SIGTERM', () => process.exit(0));
    await listen();
    if (!cluster.isWorker) process.stdout.write('READY\n');
    return;
  }
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === workers) process.stdout.write('READY\n');
  });
  cluster.on('exit', (w, code, signal) => {
    process.stderr.write(`worker ${w.process.pid} exited (${code ?? signal})\n`);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 200);
  });
}
