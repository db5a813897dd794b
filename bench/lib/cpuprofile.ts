import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** "12.3% name file:line", most self time first. */
  functions: string[];
  /** Self time grouped by where the code lives (our src, fastify, node internals, ...). */
  areas: string[];
  /** Inclusive time (self + callees) of our own functions (src/, bench/) and fastify's hooks. */
  inclusive: string[];
  /** Share of samples that were idle (event loop waiting). */
  idle: number;
  /** Raw sample counts per area and per function, for comparing two profiles. */
  areaSamples: Map<string, number>;
  functionSamples: Map<string, number>;
  samples: number;
}

function area(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : `native ${name}`;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith('node:')) return 'node internals';
  const s = /\/(src|bench)\/(.*)$/.exec(url);
  return s ? `${s[1]}/${s[2]!.split('/')[0]}` : url;
}

/**
 * Summarises a .cpuprofile (`node --cpu-prof`): self time per function and per area, over the
 * last `windowSeconds` before `trimEndSeconds` from the end (the load, not start-up/shutdown).
 */
export function summariseProfile(file: string, windowSeconds: number, trimEndSeconds = 0.3): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inc = new Map<string, number>();
  const to = p.endTime - trimEndSeconds * 1e6;
  const from = to - windowSeconds * 1e6;
  const fn = new Map<string, number>();
  const ar = new Map<string, number>();
  let t = p.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    total++;
    const f = node.callFrame;
    if (f.functionName === '(idle)') idle++;
    const where = f.url
      ? `${f.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${f.lineNumber + 1}`
      : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    fn.set(key, (fn.get(key) ?? 0) + 1);
    const a = area(f.url, f.functionName);
    ar.set(a, (ar.get(a) ?? 0) + 1);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const c = byId.get(id)!.callFrame;
      if (!/\/(src|bench)\//.test(c.url)) continue;
      const k = `${c.functionName || '(anonymous)'} ${c.url.replace(/^.*\/(src|bench)\//, '$1/')}:${c.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      inc.set(k, (inc.get(k) ?? 0) + 1);
    }
  }
  const fmt = (m: Map<string, number>, count: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([k, v]) => `${((100 * v) / Math.max(1, total)).toFixed(1)}% ${k}`);
  return {
    functions: fmt(fn, 25),
    areas: fmt(ar, 15),
    inclusive: fmt(inc, 25),
    idle: idle / Math.max(1, total),
    areaSamples: ar,
    functionSamples: fn,
    samples: total,
  };
}
