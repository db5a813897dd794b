import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Command } from 'commander';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { buildProgram } from '../../src/cli/main';
import { runCliInProcess } from '../helpers/cli-in-process';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

/** Every leaf command of the CLI (from the program itself, so a new command is covered), with its long options. */
function leafCommands(): { path: string[]; options: string[]; args: number }[] {
  const out: { path: string[]; options: string[]; args: number }[] = [];
  const walk = (c: Command, path: string[]) => {
    for (const sub of c.commands) {
      const p = [...path, sub.name()];
      if (sub.commands.length > 0) walk(sub, p);
      else
        out.push({
          path: p,
          options: sub.options.map((o) => o.long ?? o.short ?? '').filter(Boolean),
          args: sub.registeredArguments.length,
        });
    }
  };
  walk(buildProgram(), []);
  return out;
}

/**
 * #18 item 6: property-based tests of the CLI's bad-input promise (docs/errors.md): random
 * arguments to every command, and random mutations of a valid config to `config check`, never
 * end in an internal error (exit 70), and a refusal (any non-zero exit) writes nothing: the
 * store's rows, the HSM's objects and the data directory are as before. The CLI runs in this
 * process (`runCli`), on a real SoftHSM2 token and SQLite store, so a few hundred runs take
 * seconds; the run counts are bounded to keep the suite fast.
 */
describe('CLI properties: no internal error, and a refusal writes nothing', function () {
  this.timeout(300_000);
  let token: SoftHsmToken;
  let cfg: string;
  let kid: string;
  let emptyCwd: string;
  const cwdBefore = process.cwd();
  const db = () => join(token.dir, 'keywarden.db');

  /** The store's rows (every table but the lock leases, which are bookkeeping), the HSM's objects, the data dir. */
  const fingerprint = (): string => {
    const h = createHash('sha256');
    const conn = new Database(db(), { readonly: true, fileMustExist: true });
    try {
      const tables = conn
        .prepare(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('scope_locks') ORDER BY name",
        )
        .all() as { name: string }[];
      for (const { name } of tables)
        h.update(name).update(JSON.stringify(conn.prepare(`SELECT * FROM "${name}"`).all()));
    } finally {
      conn.close();
    }
    h.update(
      execFileSync(
        'pkcs11-tool',
        [
          '--module',
          token.modulePath,
          '--token-label',
          token.tokenLabel,
          '--login',
          '--pin',
          token.pin,
          '-O',
        ],
        { env: { ...process.env, ...token.env }, encoding: 'utf8' },
      ),
    );
    h.update(readdirSync(token.dir).sort().join('\n'));
    return h.digest('hex');
  };

  before(async () => {
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    cfg = join(token.dir, 'good.yaml');
    await writeFile(cfg, stringify(testConfigDocument(token, [{ name: 'demo' }])));
    // Relative paths the generator makes (scan targets, --config values) resolve in an empty directory.
    emptyCwd = mkdtempSync(join(tmpdir(), 'kw-robust-cwd-'));
    process.chdir(emptyCwd);
    const init = await runCliInProcess(['-c', cfg, 'init']);
    assert.equal(init.code, 0, init.stderr);
    kid = JSON.parse((await runCliInProcess(['-c', cfg, '--local', '--json', 'keys', 'list'])).stdout)[0].kid;
  });
  after(async () => {
    process.chdir(cwdBefore);
    if (emptyCwd) rmSync(emptyCwd, { recursive: true, force: true });
    await token?.cleanup();
  });

  it('regressions: an undefined YAML alias is exit 3, --log-level bogus is exit 2', async () => {
    const alias = join(token.dir, 'alias.yaml');
    // The alias replaces a value: appended as a second `logLevel` key it would be refused as a
    // duplicate key before any alias is resolved, which passed without the fix.
    const text = stringify(testConfigDocument(token, [{ name: 'demo' }]));
    assert.match(text, /^logLevel: silent$/m);
    await writeFile(alias, text.replace(/^logLevel: silent$/m, 'logLevel: *nope'));
    const r = await runCliInProcess(['-c', alias, 'config', 'check']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /CONFIG_INVALID/);
    assert.match(r.stderr, /Unresolved alias.*nope/);
    const bogus = await runCliInProcess(['-c', cfg, '--log-level', 'bogus', 'keys', 'list']);
    assert.equal(bogus.code, 2, bogus.stderr);
    assert.match(bogus.stderr, /bogus/);
  });

  it('random arguments to every command: never exit 70; a refusal changes nothing', async () => {
    const commands = leafCommands().filter((c) => c.path[0] !== 'serve'); // serve does not return
    assert.ok(commands.length >= 25, `only ${commands.length} commands found`);
    const values = fc.oneof(
      fc.constantFrom(
        'demo',
        'nope',
        kid,
        kid.slice(0, 8),
        '0',
        '-1',
        '1e309',
        'NaN',
        '',
        ' ',
        '{}',
        '[]',
        '{"sub":"alice","aud":"demo-api"}',
        '{"iss":"https://evil"}',
        'eyJhbGciOiJub25lIn0.e30.',
        '2026-01-01',
        '1d',
        '-5m',
        'sign',
        'verify',
        'x'.repeat(300),
        '../etc/passwd',
        '%s%n',
        'demo:sign',
        '1:abc',
      ),
      fc.string({ maxLength: 24 }),
    );
    let baseline = fingerprint();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...commands),
        fc.array(
          fc.oneof(
            { weight: 2, arbitrary: values },
            {
              weight: 2,
              arbitrary: fc.constantFrom('--json', '--log-level', '--config', '--scope', '--help'),
            },
          ),
          { maxLength: 6 },
        ),
        fc.array(values, { maxLength: 3 }),
        async (command, mixed, positional) => {
          const extra = [...positional, ...mixed];
          const opts = command.options;
          const args = [
            ...command.path,
            ...extra.map((a, i) => (i % 3 === 2 && opts.length ? opts[i % opts.length]! : a)),
          ];
          // Never stdin ('-'), never a directory to scan (a scan of a tree is slow, not wrong).
          fc.pre(
            args.every((a) => a !== '-' && !(existsSync(resolve(a)) && statSync(resolve(a)).isDirectory())),
          );
          runs += 1;
          // --local: no daemon runs here, and the commands themselves (store, HSM) are under test.
          const r = await runCliInProcess(['-c', cfg, '--local', ...args]);
          assert.notEqual(r.code, 70, `keywarden ${args.join(' ')}: internal error\n${r.stderr}`);
          const now = fingerprint();
          if (r.code !== 0)
            assert.equal(now, baseline, `keywarden ${args.join(' ')} (exit ${r.code}) changed something`);
          baseline = now;
        },
      ),
      { numRuns: Number(process.env.KEYWARDEN_PROPERTY_RUNS ?? 120), endOnFailure: true },
    );
    assert.ok(runs > 50, `only ${runs} runs`);
  });

  it('random mutations of a valid config: config check never exits 70 and creates nothing', async () => {
    const good = testConfigDocument(token, [{ name: 'demo' }], { store: { url: 'sqlite:mutated/kw.db' } });
    const text = stringify(good);
    const paths: string[][] = [];
    const walk = (v: unknown, p: string[]) => {
      if (p.length > 0) paths.push(p);
      if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...p, k]);
    };
    walk(good, []);
    const odd = fc.constantFrom<unknown>(
      null,
      -1,
      0,
      Number.POSITIVE_INFINITY,
      '',
      '0s',
      '401d',
      '1',
      'ES512',
      'none',
      '*',
      {},
      [],
      true,
      [1, 2],
      'x'.repeat(5000),
    );
    const structural = fc
      .tuple(
        fc.constantFrom(...paths),
        fc.oneof(odd, fc.jsonValue({ maxDepth: 2 })),
        fc.constantFrom('set', 'delete', 'add'),
      )
      .map(([path, value, op]) => {
        const doc = structuredClone(good) as Record<string, unknown>;
        let parent = doc as Record<string, unknown>;
        for (const k of path.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
        const last = path[path.length - 1]!;
        if (op === 'delete') delete parent[last];
        else if (op === 'add') parent[`${last}Extra`] = value;
        else parent[last] = value;
        return stringify(doc);
      });
    const snippets = fc.constantFrom(
      '*a',
      '&a ',
      '*nope',
      '<<: *x\n',
      '!!binary ',
      '!!js/function ',
      ': ',
      '\t',
      '- ',
      '{',
      ']',
      '%YAML 1.1\n',
      '---\n',
      '\u0000',
      '"',
      '? ',
      '|\n',
    );
    const textual = fc
      .tuple(fc.nat({ max: text.length }), fc.oneof(snippets, fc.string({ maxLength: 12 })), fc.boolean())
      .map(([at, s, truncate]) => (truncate ? text.slice(0, at) : text.slice(0, at) + s + text.slice(at)));
    const dir = readdirSync(token.dir).sort();
    const file = join(token.dir, 'mutated.yaml');
    await fc.assert(
      fc.asyncProperty(fc.oneof(structural, textual), fc.boolean(), async (yaml, json) => {
        await writeFile(file, yaml);
        const r = await runCliInProcess(['-c', file, ...(json ? ['--json'] : []), 'config', 'check']);
        assert.notEqual(r.code, 70, `config check: internal error on\n${yaml}\n${r.stderr}`);
        assert.ok([0, 3].includes(r.code), `config check exited ${r.code}: ${r.stderr}`);
        assert.deepEqual(readdirSync(token.dir).sort(), [...dir, 'mutated.yaml'].sort());
      }),
      { numRuns: Number(process.env.KEYWARDEN_PROPERTY_RUNS ?? 300), endOnFailure: true },
    );
  });
});
