/**
 * The shipped systemd units (deploy/keywarden.service and deploy/keywarden-hsm.service, SoftHSM2
 * behind p11-kit's RPC server as its own user), checked by systemd's own tools: each must parse
 * without a single complaint (systemd ignores an unknown or misspelt directive with a warning, so
 * a typo silently drops that line's hardening) and keep an overall exposure of at most 2.0 in
 * `systemd-analyze security`. Both checks are attacked with a weakened copy.
 * No systemd runs here as PID 1: the units are analysed offline, not started.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO_ROOT = resolve(__dirname, '..', '..');
const UNIT = readFileSync(join(REPO_ROOT, 'deploy', 'keywarden.service'), 'utf8');
const HSM_UNIT = readFileSync(join(REPO_ROOT, 'deploy', 'keywarden-hsm.service'), 'utf8');
const UNITS = [
  { name: 'keywarden.service', text: UNIT },
  { name: 'keywarden-hsm.service', text: HSM_UNIT },
];
/** systemd-analyze's exposure scale is 0.0–10.0 on screen, 0–100 for --threshold. */
const MAX_EXPOSURE = 2.0;

describe('deploy/keywarden.service and keywarden-hsm.service (systemd-analyze, offline)', function () {
  this.timeout(60_000);
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kw-unit-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Writes `text` as keywarden.service (or `name`) with the release path pointed at this
   * checkout, so `verify` finds the executables the unit names (bin/keywarden) instead of
   * /opt/keywarden. With `sub`, into that directory (units verified together).
   */
  function unitFile(text: string, name = 'keywarden.service', sub = mkdtempSync(join(dir, 'u-'))): string {
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
    const unit = file.slice(file.lastIndexOf('/') + 1).replaceAll('.', '\\.');
    const m = new RegExp(`Overall exposure level for ${unit}: (\\d+\\.\\d)`).exec(r.out);
    assert.ok(m, `no exposure level in:\n${r.out}`);
    return { code: r.code, level: Number(m[1]) };
  }

  for (const { name, text } of UNITS) {
    it(`${name} parses without any warning, and names executables that exist`, () => {
      const r = analyze(['verify', unitFile(text, name)]);
      assert.equal(r.code, 0, r.out);
      assert.equal(r.out.trim(), '', 'systemd-analyze verify printed warnings');
    });
  }

  it('the two units parse together (keywarden.service names keywarden-hsm.service)', () => {
    const sub = mkdtempSync(join(dir, 'both-'));
    const files = UNITS.map(({ name, text }) => unitFile(text, name, sub));
    const r = analyze(['verify', ...files]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), '', 'systemd-analyze verify printed warnings');
  });

  it('a misspelt hardening directive is caught (the check can fail)', () => {
    const typo = UNIT.replace(/^LimitCORE=0$/m, 'LimitCOR=0');
    assert.notEqual(typo, UNIT);
    const r = analyze(['verify', unitFile(typo)]);
    assert.match(r.out, /Unknown key (name )?'LimitCOR'/);
  });

  for (const { name, text } of UNITS) {
    it(`${name} has an overall exposure of at most ${MAX_EXPOSURE} (systemd-analyze security)`, () => {
      const { code, level } = exposure(unitFile(text, name));
      assert.ok(level <= MAX_EXPOSURE, `exposure ${level}`);
      assert.equal(code, 0);
    });
  }

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
    // process (outside @system-service).
    assert.match(UNIT, /^SystemCallFilter=@system-service @pkey$/m);
    // The HSM is another process (keywarden-hsm.service): keywarden neither loads SoftHSM2 nor
    // may write a token directory, and it starts after, stops and restarts with the HSM server.
    const settings = UNIT.split('\n').filter((l) => !l.startsWith('#'));
    assert.deepEqual(
      settings.filter((l) => /softhsm/i.test(l)),
      [],
    );
    assert.match(UNIT, /^Wants=.*\bkeywarden-hsm\.service\b/m);
    assert.match(UNIT, /^After=.*\bkeywarden-hsm\.service\b/m);
    assert.match(UNIT, /^PartOf=keywarden-hsm\.service$/m);
    // A start that fails on the HSM config (exit 6: module, token label, PIN) is not retried: it
    // cannot succeed, and a wrong PIN would be tried again and again (docs/operations.md).
    assert.match(UNIT, /^Restart=on-failure$/m);
    assert.match(UNIT, /^RestartPreventExitStatus=6$/m);
  });

  it('keywarden-hsm.service: SoftHSM2 behind p11-kit server, as its own user, socket for its group only', () => {
    const hsm = HSM_UNIT;
    assert.match(hsm, /^User=keywarden-hsm$/m);
    assert.match(hsm, /^Group=keywarden-hsm$/m);
    const exec = /^ExecStart=(.*)$/m.exec(hsm)?.[1] ?? '';
    assert.match(exec, /^\/usr\/bin\/p11-kit server --foreground --name \/run\/keywarden-hsm\/pkcs11 /);
    assert.match(exec, /--provider \S*\/libsofthsm2\.so pkcs11:token=keywarden$/);
    // The token lives in the HSM's own state directory, which only its user can read.
    assert.match(hsm, /^Environment=SOFTHSM2_CONF=\/var\/lib\/keywarden-hsm\/softhsm2\.conf$/m);
    assert.match(hsm, /^StateDirectory=keywarden-hsm$/m);
    assert.match(hsm, /^StateDirectoryMode=0700$/m);
    // p11-kit creates its socket 0711; the unit opens it to the group (keywarden's user) only.
    assert.match(hsm, /^RuntimeDirectory=keywarden-hsm$/m);
    assert.match(hsm, /^RuntimeDirectoryMode=0750$/m);
    assert.match(hsm, /^ExecStartPost=.*chmod 0660 \/run\/keywarden-hsm\/pkcs11'$/m);
    assert.match(hsm, /^LimitCORE=0$/m);
    assert.match(hsm, /^RestrictAddressFamilies=AF_UNIX$/m);
    assert.match(hsm, /^PrivateNetwork=yes$/m);
  });

  it('keywarden-hsm.service: a copy without its sandboxing scores above the bound (the check can fail)', () => {
    const weakened = HSM_UNIT.split('\n')
      .filter(
        (l) =>
          !/^(NoNewPrivileges|CapabilityBoundingSet|ProtectSystem|SystemCallFilter|PrivateDevices|PrivateNetwork|RestrictAddressFamilies|IPAddressDeny|User)=/.test(
            l,
          ),
      )
      .join('\n');
    const { code, level } = exposure(unitFile(weakened, 'keywarden-hsm.service'));
    assert.ok(level > MAX_EXPOSURE, `weakened unit still scored ${level}`);
    assert.notEqual(code, 0);
  });
});
