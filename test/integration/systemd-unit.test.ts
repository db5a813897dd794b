/**
 * The shipped systemd unit (deploy/keywarden.service), checked by systemd's own tools: it must
 * parse without a single complaint (systemd ignores an unknown or misspelt directive with a
 * warning, so a typo silently drops that line's hardening) and keep an overall exposure of at
 * most 2.0 in `systemd-analyze security`. Both checks are attacked with a weakened copy.
 * No systemd runs here as PID 1: the unit is analysed offline, not started.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO_ROOT = resolve(__dirname, '..', '..');
const UNIT = readFileSync(join(REPO_ROOT, 'deploy', 'keywarden.service'), 'utf8');
/** systemd-analyze's exposure scale is 0.0–10.0 on screen, 0–100 for --threshold. */
const MAX_EXPOSURE = 2.0;

describe('deploy/keywarden.service (systemd-analyze, offline)', function () {
  this.timeout(60_000);
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kw-unit-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Writes `text` as keywarden.service with the release path pointed at this checkout, so
   * `verify` finds the executables the unit names (bin/keywarden) instead of /opt/keywarden.
   */
  function unitFile(text: string, name = 'keywarden.service'): string {
    const sub = mkdtempSync(join(dir, 'u-'));
    const file = join(sub, name);
    writeFileSync(file, text.replaceAll('/opt/keywarden/', `${REPO_ROOT}/`));
    return file;
  }

  function analyze(args: string[]) {
    const r = spawnSync('systemd-analyze', args, { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.error, undefined, `systemd-analyze could not run: ${String(r.error)}`);
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  }

  function exposure(file: string): { code: number | null; level: number } {
    const r = analyze(['security', '--offline=true', `--threshold=${MAX_EXPOSURE * 10}`, file]);
    const m = /Overall exposure level for keywarden\.service: (\d+\.\d)/.exec(r.out);
    assert.ok(m, `no exposure level in:\n${r.out}`);
    return { code: r.code, level: Number(m[1]) };
  }

  it('parses without any warning, and names executables that exist', () => {
    const r = analyze(['verify', unitFile(UNIT)]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), '', 'systemd-analyze verify printed warnings');
  });

  it('a misspelt hardening directive is caught (the check can fail)', () => {
    const typo = UNIT.replace(/^LimitCORE=0$/m, 'LimitCOR=0');
    assert.notEqual(typo, UNIT);
    const r = analyze(['verify', unitFile(typo)]);
    assert.match(r.out, /Unknown key (name )?'LimitCOR'/);
  });

  it(`has an overall exposure of at most ${MAX_EXPOSURE} (systemd-analyze security)`, () => {
    const { code, level } = exposure(unitFile(UNIT));
    assert.ok(level <= MAX_EXPOSURE, `exposure ${level}`);
    assert.equal(code, 0);
  });

  it('a copy without its sandboxing scores above the bound (the check can fail)', () => {
    const weakened = UNIT.split('\n')
      .filter(
        (l) =>
          !/^(NoNewPrivileges|CapabilityBoundingSet|ProtectSystem|SystemCallFilter|PrivateDevices|RestrictAddressFamilies)=/.test(
            l,
          ),
      )
      .join('\n');
    const { code, level } = exposure(unitFile(weakened));
    assert.ok(level > MAX_EXPOSURE, `weakened unit still scored ${level}`);
    assert.notEqual(code, 0);
  });

  it('keeps the settings DESIGN invariant I3 and the PIN handling rely on', () => {
    // I3: no core dump of a process holding HSM sessions; the PIN arrives as a credential.
    assert.match(UNIT, /^LimitCORE=0$/m);
    assert.match(UNIT, /^LoadCredential=hsm-pin:/m);
    assert.doesNotMatch(UNIT, /^Environment=.*PIN/im, 'no PIN in the environment');
    // Found by starting the unit under systemd as PID 1: V8 calls pkey_alloc in every node
    // process (outside @system-service), and SoftHSM2 writes its token files.
    assert.match(UNIT, /^SystemCallFilter=@system-service @pkey$/m);
    assert.match(UNIT, /^ReadWritePaths=-\/var\/lib\/softhsm\/tokens$/m);
  });
});
