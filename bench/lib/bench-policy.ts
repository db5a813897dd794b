/** A long key policy (the quick-start one), so no rotation happens during a measurement. */
export const STEADY_POLICY = {
  jwksMaxAge: '5m',
  prepublish: '10m',
  activeFor: '1d',
  verifyGrace: '1h',
  maxTokenTtl: '5m',
  destroyAfter: '1d',
  maxKeyLifetime: '2d',
};

/** How long and how hard every HTTP comparison runs (see run.ts for --quick). */
export interface BenchPlan {
  connections: number;
  warmupSeconds: number;
  reps: number;
  seconds: number;
  quick: boolean;
  /** The sign benchmark's algorithms (`--alg`, repeatable); all of them when absent. */
  algs?: readonly string[];
}
