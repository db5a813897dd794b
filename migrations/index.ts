import { InitialSchema1764000000000 } from './1764000000000-initial-schema';
import { AuditLog1764100000000 } from './1764100000000-audit-log';
import { KeySetVersion1764200000000 } from './1764200000000-key-set-version';
import { ClientSeal1764300000000 } from './1764300000000-client-seal';
import { ClientCertificate1764400000000 } from './1764400000000-client-certificate';
import { KeyChangeLog1764500000000 } from './1764500000000-key-change-log';

/** Every migration, in order. The schema only changes through these (never `synchronize`). */
export const MIGRATIONS = [
  InitialSchema1764000000000,
  AuditLog1764100000000,
  KeySetVersion1764200000000,
  ClientSeal1764300000000,
  ClientCertificate1764400000000,
  KeyChangeLog1764500000000,
];
