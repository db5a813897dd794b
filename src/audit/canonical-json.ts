/** The canonical JSON of audit records is policy's (src/policy/canonical-json.ts): one definition. */
export { canonicalJson } from '../policy/canonical-json';
