import { InitialSchema1764000000000 } from './1764000000000-initial-schema';
import { AuditLog1764100000000 } from './1764100000000-audit-log';

/** Every migration, in order. The schema only changes through these (never `synchronize`). */
export const MIGRATIONS = [InitialSchema1764000000000, AuditLog1764100000000];
