/** Child process of the scale benchmark: `scale-size.ts N softhsm|zero-cost PLAN_JSON`, prints `RESULT <json>`. */
import type { BenchPlan } from './lib/bench-policy';
import { measureSize, type Keygen } from './scale';

const n = Number(process.argv[2]);
const keygen = process.argv[3] as Keygen;
const plan = JSON.parse(process.argv[4] ?? '{}') as BenchPlan;
measureSize(n, keygen, plan).then(
  (r) => {
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    process.exit(0);
  },
  (e: Error) => {
    process.stderr.write(`${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
