import * as assert from 'node:assert/strict';
import { CkError, toCkError, toKeywardenError } from '../../../src/backends/pkcs11/ck-error';

describe('PKCS#11 return values (ck-error)', () => {
  it('names CKR_ACTION_PROHIBITED, which pkcs11js reports as CKR_VENDOR_DEFINED:27', () => {
    const e = toCkError('C_SetAttributeValue', new Error('CKR_VENDOR_DEFINED:27'));
    assert.ok(e instanceof CkError);
    assert.equal(e.ckr, 'CKR_ACTION_PROHIBITED');
    assert.equal(e.rv, 0x1b);
    assert.match(toKeywardenError(e, 'changing a label').message, /CKR_ACTION_PROHIBITED/);
  });

  it('keeps every other name, vendor-defined ones included', () => {
    const other = toCkError('C_Sign', new Error('CKR_VENDOR_DEFINED:2147483649'));
    assert.ok(other instanceof CkError);
    assert.equal(other.ckr, 'CKR_VENDOR_DEFINED');
    const pin = toCkError('C_Login', new Error('CKR_PIN_INCORRECT:160'));
    assert.ok(pin instanceof CkError);
    assert.equal(pin.ckr, 'CKR_PIN_INCORRECT');
    assert.equal(toKeywardenError(pin, 'login').code, 'BACKEND_PIN_INCORRECT');
  });
});
