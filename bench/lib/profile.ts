import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/**
 * Runs `fn` under V8's CPU profiler (the same data as `node --cpu-prof`, for one section of a
 * benchmark), writes the .cpuprofile to `file` (open it in Chrome DevTools) and returns the
 * functions with the most self time, for the report.
 */
export async function profiled<T>(file: string, fn: () => Promise<T>): Promise<{ value: T; top: string[] }> {
  const s = new Session();
  s.connect();
  const post = (method: string, params: object = {}) =>
    new Promise<unknown>((res, rej) => s.post(method, params, (e, r) => (e ? rej(e) : res(r))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 500 });
  await post('Profiler.start');
  let value: T;
  let nodes: ProfileNode[];
  try {
    value = await fn();
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: { nodes: ProfileNode[] } };
    writeFileSync(file, JSON.stringify(profile));
    s.disconnect();
    nodes = profile.nodes;
  }
  const self = new Map<string, number>();
  let total = 0;
  for (const n of nodes) {
    const hits = n.hitCount ?? 0;
    total += hits;
    const f = n.callFrame;
    const where = f.url
      ? `${f.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + hits);
  }
  const top = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 15)
    .map(([k, v]) => `${((100 * v) / Math.max(1, total)).toFixed(1)}% ${k}`);
  return { value, top };
}
