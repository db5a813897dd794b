import { InitialSchema1764000000000 } from './1764000000000-initial-schema';

/** Every migration, in order. The schema only changes through these (never `synchronize`). */
export const MIGRATIONS = [InitialSchema1764000000000];
