import * as assert from 'node:assert/strict';
import { hostname } from 'node:os';
import {
  executeOperation,
  keysRevoke,
  localOperator,
  operatorActor,
  socketOperator,
} from '../../../src/admin';
import type { Keywarden } from '../../../src/lifecycle';

describe('admin operators and operation input', () => {
  it('the actor names the transport, the user, the uid and whether the name is only claimed', () => {
    const claimed = socketOperator({ 'x-keywarden-os-user': 'alice', 'x-keywarden-os-uid': '1001' });
    assert.equal(operatorActor(claimed), `admin-socket:alice(uid=1001,claimed)@${hostname()}`);
    assert.equal(operatorActor(socketOperator({})), `admin-socket:unknown(claimed)@${hostname()}`);
    const me = localOperator();
    assert.equal(operatorActor(me), `local:${me.name}(uid=${process.getuid!()})@${hostname()}`);
  });

  it('a malformed claim is refused, not recorded (no spaces, newlines or overlong names; uid digits only)', () => {
    for (const headers of [
      { 'x-keywarden-os-user': 'alice\nkey.revoked' },
      { 'x-keywarden-os-user': 'a b' },
      { 'x-keywarden-os-user': 'x'.repeat(65) },
      { 'x-keywarden-os-user': ['a', 'b'] },
      { 'x-keywarden-os-uid': '-1' },
      { 'x-keywarden-os-uid': '1e3' },
    ]) {
      assert.throws(() => socketOperator(headers), { code: 'REQUEST_INVALID' }, JSON.stringify(headers));
    }
  });

  it('executeOperation refuses input its schema does not allow before the facade is touched', async () => {
    const untouched = new Proxy({} as Keywarden, {
      get() {
        throw new Error('the facade was called');
      },
    });
    for (const input of [
      undefined,
      [],
      { kid: 'abc' },
      { kid: 'abc', reason: '' },
      { kid: 5, reason: 'x' },
      { kid: 'abc', reason: 'x', extra: 1 },
    ]) {
      await assert.rejects(
        executeOperation(untouched, keysRevoke, input, 'test'),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'REQUEST_INVALID', `${JSON.stringify(input)}: ${e.message}`);
          assert.match(e.message, /^keys\.revoke: /);
          return true;
        },
      );
    }
  });
});
