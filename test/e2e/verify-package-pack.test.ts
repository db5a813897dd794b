/**
 * @keywarden/verify as a relying party's developer meets it: `npm pack` in the workspace, then
 * `npm install <tarball>` into an empty project with no registry reachable and an empty npm
 * cache (so nothing can come from anywhere but the tarball), no native build, and the README's
 * quick start, as written, verifies a token from a running daemon.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, type Daemon } from '../helpers/daemon';

const run = promisify(execFile);
const PACKAGE_DIR = resolve(__dirname, '..', '..', 'packages', 'verify');

/** Every file under `dir`, relative. */
async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = join(prefix, e.name);
    if (e.isDirectory()) out.push(...(await walk(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out;
}

/** The first fenced block of `lang` after the heading `heading` in a Markdown text. */
function codeBlockAfter(markdown: string, heading: string, lang: string): string {
  const at = markdown.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `the README has a "${heading}" section`);
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(markdown.slice(at));
  assert.ok(m, `a ${lang} block under "${heading}"`);
  return m[1]!;
}

describe('@keywarden/verify: packed, installed offline into an empty project, verifying a daemon token (e2e)', function () {
  this.timeout(300_000);
  let work: string;
  let daemon: Daemon;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kw-rp-pack-'));
    daemon = await startDaemon({ scopes: [{ name: 'orders' }] });
  });
  after(async () => {
    await daemon?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('packs, installs with no network and no native build, and the README quick start verifies', async () => {
    // 1. npm pack (its prepack builds dist/ from the sources).
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: PACKAGE_DIR,
      env: { ...process.env, npm_config_update_notifier: 'false' },
    });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info!.files.map((f) => f.path);
    assert.ok(files.includes('dist/cjs/index.js') && files.includes('dist/esm/index.js'), files.join(' '));
    assert.ok(files.includes('README.md') && files.includes('package.json'));
    assert.ok(!files.some((f) => f.startsWith('src/') || f.endsWith('.node') || f === 'binding.gyp'));

    // 2. An empty project; the registry unreachable, the cache empty, install scripts allowed
    //    (there are none to run).
    const app = join(work, 'app');
    await run('mkdir', ['-p', app]);
    await writeFile(
      join(app, 'package.json'),
      JSON.stringify({ name: 'rp-app', version: '1.0.0', private: true }),
    );
    const env = {
      ...process.env,
      npm_config_registry: 'http://127.0.0.1:9/',
      npm_config_cache: join(work, 'empty-cache'),
      npm_config_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    await run('npm', ['install', join(work, info!.filename)], { cwd: app, env });
    const installed = await readdir(join(app, 'node_modules'));
    assert.deepEqual(
      installed.filter((n) => !n.startsWith('.')),
      ['@keywarden'],
      'nothing but the package itself',
    );
    const inside = await walk(join(app, 'node_modules', '@keywarden', 'verify'));
    assert.ok(!inside.some((f) => f.endsWith('.node') || f.includes('build/Release')), 'no native build');

    // 3. The README's quick start, as written, with this daemon's scope as the issuer.
    const readme = await readFile(join(PACKAGE_DIR, 'README.md'), 'utf8');
    const quickStart = codeBlockAfter(readme, '## Quick start', 'js');
    const issuerInReadme = /issuer: '([^']+)'/.exec(quickStart)?.[1];
    const audienceInReadme = /audience: '([^']+)'/.exec(quickStart)?.[1];
    assert.ok(issuerInReadme && audienceInReadme, 'the quick start names an issuer and an audience');
    const script = quickStart
      .replace(issuerInReadme, daemon.issuer('orders'))
      .replace(audienceInReadme, 'orders-api');
    await writeFile(join(app, 'verify.mjs'), script);

    const signed = await daemon.cli([
      'sign',
      '--scope',
      'orders',
      '--claims',
      JSON.stringify({ sub: 'alice', aud: 'orders-api' }),
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const token = signed.stdout.trim();
    const ok = await run(process.execPath, ['verify.mjs', token], { cwd: app });
    assert.match(ok.stdout, /^valid: alice$/m);

    const tampered = `${token.slice(0, -6)}AAAAAA`;
    const refused = await run(process.execPath, ['verify.mjs', tampered], { cwd: app });
    assert.match(refused.stdout, /^refused: signature_invalid/m);

    // CommonJS, from the same installed tarball.
    const cjs = await run(
      process.execPath,
      [
        '-e',
        `const { createVerifier } = require('@keywarden/verify');
         createVerifier({ issuer: ${JSON.stringify(daemon.issuer('orders'))}, audience: 'orders-api' })
           .verify(${JSON.stringify(token)}).then((r) => console.log(r.valid ? r.claims.sub : r.reason));`,
      ],
      { cwd: app },
    );
    assert.equal(cjs.stdout.trim(), 'alice');
  });
});
