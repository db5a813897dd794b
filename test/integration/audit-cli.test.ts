/**
 * `keywarden audit tail|verify|checkpoint|prune` through the real CLI on a SoftHSM2 token and a
 * SQLite store shared by several processes, as an operator and a daemon share it.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import type { ChainedRecord } from '../../src/audit';
import { verifyAuditChain, type AuditVerifyReport } from '../../src/audit/verify';
import { openRuntime, storeAuditLog } from '../../src/main';
import { validateConfig } from '../../src/config/validate-config';
import { openStore } from '../../src/store/data-source';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const ROOT = resolve(__dirname, '..', '..');

/** A separate Node process that appends records to the store through the real sink, in rounds. */
interface Appender {
  /** Settles once the process has opened the store and waits for the first round. */
  ready: Promise<void>;
  /** Starts the next round; settles when the process has appended that round's records. */
  round(): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * A second process appending `rounds` × `perRound` records through its own StoreAuditLog. It
 * opens the store, says READY, then for each round waits for GO on stdin, appends, and says
 * DONE. The parent starts both processes' rounds together: a barrier, so they write at the same
 * time however long each took to start (a fixed start time failed on a loaded machine). Rounds,
 * not one long run, because SQLite's busy handler sleeps while the other writer holds the lock:
 * a process that wins the first append can keep the lock for a whole long run (a CI machine
 * once wrote all 150 of one process's records before the other's first), and a test in which
 * one process wrote everything first proves nothing about concurrent appends.
 */
function appender(configPath: string, name: string, rounds: number, perRound: number): Appender {
  const code = `
    const pino = require('pino');
    const { createInterface } = require('node:readline');
    const { loadConfig } = require(${JSON.stringify(join(ROOT, 'src/config/load-config.ts'))});
    const { openStore } = require(${JSON.stringify(join(ROOT, 'src/store/data-source.ts'))});
    const { StoreAuditLog } = require(${JSON.stringify(join(ROOT, 'src/audit/index.ts'))});
    (async () => {
      const config = loadConfig(${JSON.stringify(configPath)});
      const ds = await openStore(config.store.url);
      const sink = new StoreAuditLog(ds, pino({ level: 'silent' }));
      const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
      process.stdout.write('READY\\n');
      for (let r = 0; r < ${rounds}; r++) {
        await lines.next();
        for (let j = 0; j < ${perRound}; j++) {
          await sink.record({ type: 'client.created', actor: ${JSON.stringify(name)}, data: { round: r, i: r * ${perRound} + j } });
        }
        process.stdout.write('DONE\\n');
      }
      await ds.destroy();
      process.exit(0);
    })().catch((e) => { console.error(e); process.exit(1); });
  `;
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', code], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((res, rej) => {
    child.on('error', rej);
    child.on('close', res);
  });
  // Each READY or DONE line settles the oldest waiter; a process that exits early fails them all.
  const waiters: { res: () => void; rej: (e: Error) => void }[] = [];
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line === 'READY' || line === 'DONE') waiters.shift()?.res();
    }
  });
  void exited.then((c) => {
    for (const w of waiters.splice(0)) w.rej(new Error(`appender ${name} exited (${c}) mid-protocol`));
  });
  const next = () => new Promise<void>((res, rej) => waiters.push({ res, rej }));
  const ready = next();
  return {
    ready,
    round: () => {
      const done = next();
      child.stdin!.write('GO\n');
      return done;
    },
    exited,
  };
}

describe('audit commands through the real CLI', function () {
  this.timeout(240_000);
  let token: SoftHsmToken;
  let configPath: string;
  let dbPath: string;
  // No daemon runs here: the direct path (--local), audited with the local actor.
  const kw = (...args: string[]) => runKeywarden(['-c', configPath, '--local', ...args]);

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    dbPath = join(token.dir, 'kw.db');
    const doc = testConfigDocument(token, [{ name: 'consumer' }, { name: 'enterprise' }], {
      store: { url: `sqlite:${dbPath}` },
      audit: { checkpointEveryRecords: 3 },
    });
    configPath = join(token.dir, 'keywarden.json');
    await writeFile(configPath, JSON.stringify(doc));
  });

  after(async () => token?.cleanup());

  it('records operator actions with the operator as actor; tail filters; verify passes (exit 0)', async () => {
    assert.equal((await kw('init')).code, 0);
    const rotated = await kw('--json', 'keys', 'rotate', '--scope', 'enterprise');
    assert.equal(rotated.code, 0, rotated.stderr);
    const kid = (JSON.parse(rotated.stdout) as { kid: string }).kid;
    const cp = await kw('--json', 'audit', 'checkpoint');
    assert.equal(cp.code, 0, cp.stderr);
    assert.equal((JSON.parse(cp.stdout) as { written: boolean }).written, true);

    const tail = await kw('--json', 'audit', 'tail', '--limit', '100');
    assert.equal(tail.code, 0, tail.stderr);
    const rows = JSON.parse(tail.stdout) as ChainedRecord[];
    const created = rows.find((r) => r.type === 'key.created' && r.kid === kid);
    assert.match(created?.actor ?? '', /^local:[^@(]+\(uid=\d+\)@/);
    assert.equal(created?.data.reason, 'operator rotation');
    assert.equal(rows.at(-1)?.type, 'audit.checkpoint');

    const byKid = JSON.parse((await kw('--json', 'audit', 'tail', '--kid', kid)).stdout) as ChainedRecord[];
    assert.ok(byKid.length >= 1 && byKid.every((r) => r.kid === kid));
    const two = JSON.parse(
      (await kw('--json', 'audit', 'tail', '--scope', 'consumer', '--limit', '2')).stdout,
    ) as ChainedRecord[];
    assert.equal(two.length, 2);
    assert.ok(two.every((r) => r.scope === 'consumer'));

    const verify = await kw('audit', 'verify');
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    assert.match(verify.stdout, /^audit chain OK/);
    assert.match(verify.stdout, /trust: hsm-confirmed/);
  });

  it('a daemon and the CLI appending at once (two processes, one SQLite file) keep one chain', async () => {
    // Migrate first (as `init` does), so the two processes only contend for appends.
    await (await openStore(`sqlite:${dbPath}`)).destroy();
    const rounds = 15;
    const perRound = 10;
    const procs = [
      appender(configPath, 'proc-a', rounds, perRound),
      appender(configPath, 'proc-b', rounds, perRound),
    ];
    await Promise.all(procs.map((p) => p.ready));
    for (let r = 0; r < rounds; r++) await Promise.all(procs.map((p) => p.round()));
    const codes = await Promise.all(procs.map((p) => p.exited));
    assert.deepEqual(codes, [0, 0]);
    const config = validateConfig(
      JSON.parse(await (await import('node:fs/promises')).readFile(configPath, 'utf8')),
      {
        source: configPath,
        baseDir: token.dir,
      },
    );
    const rt = await openRuntime(config, {
      log: pino({ level: 'silent' }),
      audit: storeAuditLog(),
    });
    try {
      const r = await verifyAuditChain(rt.ctx);
      assert.ok(r.ok, JSON.stringify(r.break));
      const mine = await rt.ds.query(
        `SELECT actor, COUNT(*) AS n FROM audit_records WHERE type = 'client.created' AND actor LIKE 'proc-%' GROUP BY actor`,
      );
      assert.deepEqual(mine, [
        { actor: 'proc-a', n: 150 },
        { actor: 'proc-b', n: 150 },
      ]);
      const order = (
        (await rt.ds.query(
          `SELECT actor, data FROM audit_records WHERE type = 'client.created' AND actor LIKE 'proc-%' ORDER BY seq`,
        )) as { actor: string; data: string | Record<string, unknown> }[]
      ).map((r) => {
        const data = (typeof r.data === 'string' ? JSON.parse(r.data) : r.data) as {
          round: number;
          i: number;
        };
        return { actor: r.actor, round: data.round, i: data.i };
      });
      // Each process's records sit in the chain in the order it wrote them...
      for (const actor of ['proc-a', 'proc-b']) {
        const is = order.filter((r) => r.actor === actor).map((r) => r.i);
        assert.deepEqual(
          is,
          [...is].sort((x, y) => x - y),
          `${actor}'s records are out of order`,
        );
      }
      // ...and the chain follows the rounds: no record of a round after one of the next round
      // (each round ended, both processes' appends committed, before the next began), and every
      // round holds both processes' records, so the chain interleaves the two writers.
      const rounds = order.map((r) => r.round);
      assert.deepEqual(
        rounds,
        [...rounds].sort((x, y) => x - y),
        'a record is chained after a later round',
      );
      for (let r = 0; r < 15; r++) {
        const writers = new Set(order.filter((x) => x.round === r).map((x) => x.actor));
        assert.deepEqual([...writers].sort(), ['proc-a', 'proc-b'], `round ${r}`);
      }
    } finally {
      await rt.close();
    }
  });

  it('prune refuses evidence about live keys (exit 5, AUDIT_PRUNE_REFUSED)', async () => {
    const refused = await kw('--json', 'audit', 'prune', '--before', '0s');
    assert.equal(refused.code, 5, refused.stderr + refused.stdout);
    assert.equal(
      (JSON.parse(refused.stdout) as { error: { code: string } }).error.code,
      'AUDIT_PRUNE_REFUSED',
    );
    const bad = await kw('audit', 'prune', '--before', 'yesterday');
    assert.equal(bad.code, 2);
  });

  it('an edited record makes verify exit 1 and name the record and the kind', async () => {
    const db = new Database(dbPath);
    try {
      db.exec('DROP TRIGGER audit_records_no_update');
      db.prepare(`UPDATE audit_records SET actor = 'someone-else' WHERE seq = 2`).run();
    } finally {
      db.close();
    }
    const json = await kw('--json', 'audit', 'verify', '--offline');
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as AuditVerifyReport;
    assert.deepEqual([report.ok, report.break?.kind, report.break?.seq], [false, 'edited', 2]);
    const human = await kw('audit', 'verify');
    assert.equal(human.code, 1);
    assert.match(human.stdout, /audit chain BROKEN at seq 2 \(edited\)/);
  });
});
