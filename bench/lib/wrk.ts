/**
 * The load generator: Debian's `wrk`, in a process of its own. On a 2-core machine a load
 * generator inside the benchmark's Node process competes with the server for the same cores
 * and pushes every ratio toward 1 (issue #20); wrk is C, one thread, and its CPU time is
 * measured (bash's `times`) so it can be reported and kept out of the "others" share.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One request wrk sends (cycled through in order when there are several). */
export interface WrkRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** What one wrk run measured. */
export interface WrkResult {
  /** Responses wrk read, whatever their status. */
  requests: number;
  /** Responses with a status of 400 or more. */
  badStatus: number;
  /** Connect, read, write errors and timeouts. */
  socketErrors: number;
  durationSeconds: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU µs wrk itself used (user + system). */
  cpuUs: number;
}

/** A Lua string literal for any text: every byte outside printable ASCII as a decimal escape. */
export function luaString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    const printable = b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c;
    out += printable ? String.fromCharCode(b) : `\\${b.toString().padStart(3, '0')}`;
  }
  return `${out}"`;
}

const RESULT_MARK = 'KEYWARDEN-WRK ';

/**
 * The wrk script: the requests prebuilt once (wrk.format), cycled per connection thread, and a
 * `done` hook printing the figures as one JSON line (latencies are in µs inside wrk).
 */
export function wrkScript(requests: readonly WrkRequest[]): string {
  if (requests.length === 0) throw new Error('wrk needs at least one request');
  const built = requests.map((r) => {
    const headers = Object.entries(r.headers)
      .map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`)
      .join(', ');
    const body = r.body === undefined ? 'nil' : luaString(r.body);
    return `  wrk.format(${luaString(r.method)}, ${luaString(r.path)}, { ${headers} }, ${body}),`;
  });
  return [
    'local reqs',
    'local i = 0',
    'function init(args)',
    '  reqs = {',
    ...built,
    '  }',
    'end',
    'function request()',
    '  i = i % #reqs + 1',
    '  return reqs[i]',
    'end',
    'function done(summary, latency, requests)',
    '  local e = summary.errors',
    `  io.write(string.format('${RESULT_MARK}{"requests":%d,"duration":%d,"status":%d,"socket":%d,"p50":%d,"p99":%d}\\n',`,
    '    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,',
    '    latency:percentile(50), latency:percentile(99)))',
    'end',
    '',
  ].join('\n');
}

/** bash's `times`: the second line is its children's user and system time ("0m1.250s 0m0.310s"). */
export function childCpuUs(timesOutput: string): number {
  const lines = timesOutput.trim().split('\n');
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[lines.length - 1]!.trim());
  if (!m) return Number.NaN;
  const seconds = Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]);
  return Math.round(seconds * 1e6);
}

/** Runs wrk (-t1) against `origin` with `connections` for `seconds`. */
export async function runWrk(
  origin: string,
  requests: readonly WrkRequest[],
  connections: number,
  seconds: number,
): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kw-wrk-'));
  const script = join(dir, 'load.lua');
  writeFileSync(script, wrkScript(requests));
  try {
    const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, origin];
    // `times` after wrk exits reports wrk's CPU time: the generator's own cost per response.
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        'bash',
        ['-c', 'wrk "$@" || exit $?; echo; times', 'bash', ...args],
        { encoding: 'utf8', timeout: (seconds + 60) * 1000 },
        (err, out, errOut) =>
          err ? reject(new Error(`wrk failed: ${err.message} ${errOut}`)) : resolve(out),
      );
    });
    const line = stdout.split('\n').find((l) => l.startsWith(RESULT_MARK));
    if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
    const r = JSON.parse(line.slice(RESULT_MARK.length)) as {
      requests: number;
      duration: number;
      status: number;
      socket: number;
      p50: number;
      p99: number;
    };
    return {
      requests: r.requests,
      badStatus: r.status,
      socketErrors: r.socket,
      durationSeconds: r.duration / 1e6,
      p50Ms: r.p50 / 1000,
      p99Ms: r.p99 / 1000,
      cpuUs: childCpuUs(stdout.slice(stdout.indexOf(line) + line.length)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
