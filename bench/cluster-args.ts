/** Options of `npm run bench -- cluster` (bench/cluster.ts). */

export interface ClusterSettings {
  readonly simNodes: number;
  readonly simEndpoints: number;
  readonly labelSets: number;
  /** Creates timed for propagation (2 samples each: A's two peers). */
  readonly creates: number;
  /** Creates with a label set of their own (identity allocation included). */
  readonly newLabelCreates: number;
  readonly applies: number;
  /** Window over which idle agent CPU is measured. */
  readonly idleSeconds: number;
  readonly stem: string;
}

const FULL: ClusterSettings = {
  simNodes: 100,
  simEndpoints: 100,
  labelSets: 50,
  creates: 30,
  newLabelCreates: 10,
  applies: 40,
  idleSeconds: 10,
  stem: "cb",
};

/** `--quick`: the CI smoke test (a few samples, 10 x 20 simulated endpoints). */
const QUICK: ClusterSettings = {
  ...FULL,
  simNodes: 10,
  simEndpoints: 20,
  labelSets: 5,
  creates: 3,
  newLabelCreates: 1,
  applies: 3,
  idleSeconds: 1,
};

export function parseClusterArgs(argv: readonly string[]): ClusterSettings {
  let s: ClusterSettings = argv.includes("--quick") ? { ...QUICK } : { ...FULL };
  const num = (v: string, flag: string, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`${flag}: give an integer 0..${max}`);
    return n;
  };
  for (const a of argv) {
    const [k, v = ""] = a.split("=", 2) as [string, string?];
    switch (k) {
      case "--quick":
        break;
      case "--sim-nodes":
        s = { ...s, simNodes: num(v, k, 100) };
        break;
      case "--sim-endpoints":
        s = { ...s, simEndpoints: num(v, k, 250) };
        break;
      case "--label-sets":
        s = { ...s, labelSets: Math.max(1, num(v, k, 10_000)) };
        break;
      case "--creates":
        s = { ...s, creates: num(v, k, 1000) };
        break;
      case "--new-label-creates":
        s = { ...s, newLabelCreates: num(v, k, 1000) };
        break;
      case "--applies":
        s = { ...s, applies: num(v, k, 1000) };
        break;
      case "--idle-seconds":
        s = { ...s, idleSeconds: num(v, k, 600) };
        break;
      case "--prefix":
        if (!/^[a-z][a-z0-9]{1,5}$/.test(v)) throw new Error("--prefix: 2-6 lower-case letters and digits");
        s = { ...s, stem: v };
        break;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  return s;
}
