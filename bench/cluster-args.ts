/** Options of `npm run bench -- cluster` (bench/cluster.ts): the sizes, FULL or --quick, and their flags. */
import { flag, int, text, type FlagValues } from "./cli.js";

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

/** The flags of `npm run bench -- cluster`; absent ones take the mode's setting (FULL, or QUICK with --quick). */
export const CLUSTER_SPEC = {
  script: "cluster",
  runner: "cluster",
  measures: "Three real agents on etcd with simulated nodes x endpoints registered: ingest, propagation (create on A -> enforced on B), etcd writes per endpoint, agent memory and CPU, policy apply on every node. One JSON line per figure, with its target and the load.", // prettier-ignore
  root: "node namespaces on an underlay, nftables; needs etcd",
  flags: {
    quick: flag("the CI smoke size: 10 x 20 simulated endpoints, a few samples"),
    "sim-nodes": int({ help: "simulated nodes", min: 0, max: 100, shown: `${FULL.simNodes}; ${QUICK.simNodes} with --quick` }), // prettier-ignore
    "sim-endpoints": int({ help: "endpoints per simulated node", min: 0, max: 250, shown: `${FULL.simEndpoints}; ${QUICK.simEndpoints} with --quick` }), // prettier-ignore
    "label-sets": int({ help: "label sets of the simulated endpoints", min: 0, max: 10_000, shown: `${FULL.labelSets}; ${QUICK.labelSets} with --quick` }), // prettier-ignore
    creates: int({ help: "creates timed for propagation", min: 0, max: 1000, shown: `${FULL.creates}; ${QUICK.creates} with --quick` }), // prettier-ignore
    "new-label-creates": int({ help: "creates with a label set of their own", min: 0, max: 1000, shown: `${FULL.newLabelCreates}; ${QUICK.newLabelCreates} with --quick` }), // prettier-ignore
    applies: int({ help: "policy applies timed", min: 0, max: 1000, shown: `${FULL.applies}; ${QUICK.applies} with --quick` }), // prettier-ignore
    "idle-seconds": int({ help: "window of the idle agent CPU", min: 0, max: 600, shown: `${FULL.idleSeconds}; ${QUICK.idleSeconds} with --quick` }), // prettier-ignore
    prefix: text({ help: "stem of the scratch namespaces", value: "STEM", default: FULL.stem, pattern: /^[a-z][a-z0-9]{1,5}$/, what: "2-6 lower-case letters and digits, a letter first" }), // prettier-ignore
  },
} as const;

/** The settings of a run from its flags (bench/cli.ts checked each value against its range). */
export function clusterSettings(f: FlagValues<typeof CLUSTER_SPEC.flags>): ClusterSettings {
  const s = f.quick ? QUICK : FULL;
  return {
    simNodes: f["sim-nodes"] ?? s.simNodes,
    simEndpoints: f["sim-endpoints"] ?? s.simEndpoints,
    labelSets: Math.max(1, f["label-sets"] ?? s.labelSets),
    creates: f.creates ?? s.creates,
    newLabelCreates: f["new-label-creates"] ?? s.newLabelCreates,
    applies: f.applies ?? s.applies,
    idleSeconds: f["idle-seconds"] ?? s.idleSeconds,
    stem: f.prefix,
  };
}
