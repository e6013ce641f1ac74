/**
 * The scale bench's command line (scale.ts): sizes, FULL or --quick settings,
 * and the flags that take one figure apart (--skip, --applies, --creates,
 * --cap-seconds, --grow, --pin, --prefix), declared for bench/cli.ts. A bad flag
 * stops the bench before anything is made, naming the flag.
 */
import { choice, custom, flag, int, text, type FlagValues } from "./cli.js";
import { parsePin, type Pin } from "./traffic.js";

export interface Settings {
  readonly applies: number;
  readonly ipcacheChanges: number;
  readonly creates: number;
  /** More agent restarts, each followed by one timed apply (--restarts=N; scale-restarts.ts). */
  readonly restarts: number;
  readonly rounds: number;
  readonly seconds: number;
  /** Safety net per latency figure: stop sampling after this long (the line says how many samples). */
  readonly capMs: number;
  /** Reach the size in steps of this many endpoints (0 = seed all, then one cold start). */
  readonly grow: number;
  /** Figures not taken (--skip=apply,ipcache,create,traffic), to profile one of them. */
  readonly skip: ReadonlySet<string>;
  /** CPUs of the traffic client and server (--pin=C,S or --pin=none). */
  readonly pin?: Pin | undefined;
  /** --ipcache-check=ab: the ipcache figure A/B, background check running vs not (scale-ipcache.ts). */
  readonly ipcacheCheck?: "ab" | undefined;
}

export const FULL: Settings = {
  applies: 30,
  ipcacheChanges: 50,
  creates: 20,
  restarts: 3,
  rounds: 8,
  seconds: 5,
  capMs: 300_000,
  grow: 0,
  skip: new Set(),
};
export const QUICK: Settings = {
  applies: 6,
  ipcacheChanges: 10,
  creates: 5,
  restarts: 1,
  rounds: 6,
  seconds: 1,
  capMs: 120_000,
  grow: 0,
  skip: new Set(),
};

const SKIPPABLE = ["apply", "ipcache", "create", "traffic"] as const;

/** The flags of `node dist/bench/scale.js`; each value is checked here, before anything is made. */
export const SCALE_SPEC = {
  script: "scale",
  runner: "scale",
  measures: "The agent at cluster scale: a node with 250 or 1,000 local endpoints, 50,000 remote ipcache entries and 10,000 identities: cold start, restart, policy apply, ipcache change, endpoint create, and traffic (no table vs Membrane, ABBA rounds). One JSON line per figure with its target, ok and the load; progress on stderr.", // prettier-ignore
  root: "scratch namespaces (<prefix><hex>) and nftables",
  notes: ["To profile one figure: node --cpu-prof dist/bench/scale.js --skip=... (the others left out)."],
  flags: {
    endpoints: custom({
      help: "sizes, one run each",
      value: "N,N",
      default: [250, 1000] as readonly number[],
      shown: "250,1000",
      parse: (v) => {
        const sizes = v.split(",").map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
        if (sizes.some((x) => !Number.isInteger(x) || x < 1 || x > 2000))
          throw new Error("give sizes from 1 to 2000, separated by commas");
        return sizes;
      },
    }),
    quick: flag("fewer samples and shorter windows (QUICK)"),
    "cap-seconds": int({ help: "stop sampling a latency figure after this long (each line says how many samples)", min: 1, max: 86_400, shown: `${FULL.capMs / 1000}; ${QUICK.capMs / 1000} with --quick` }), // prettier-ignore
    skip: custom({
      help: "figures left out",
      value: SKIPPABLE.join(","),
      default: [] as readonly string[],
      shown: "none",
      parse: (v) => {
        const names = v.split(",");
        const bad = names.filter((x) => !(SKIPPABLE as readonly string[]).includes(x));
        if (bad.length > 0) throw new Error(`${bad.join(",")} unknown (${SKIPPABLE.join(", ")})`);
        return names;
      },
    }),
    applies: int({ help: "policy applies timed", min: 1, max: 1000, shown: `${FULL.applies}; ${QUICK.applies} with --quick` }), // prettier-ignore
    creates: int({ help: "endpoint creates timed (0: the mode's)", min: 0, max: 1000, shown: `${FULL.creates}; ${QUICK.creates} with --quick` }), // prettier-ignore
    restarts: int({ help: "more agent restarts, each followed by one timed apply", min: 0, max: 100, shown: `${FULL.restarts}; ${QUICK.restarts} with --quick` }), // prettier-ignore
    rounds: int({ help: "ABBA rounds of the traffic figures; more rounds, a steadier median (0: the mode's)", min: 0, max: 100, shown: `${FULL.rounds}; ${QUICK.rounds} with --quick` }), // prettier-ignore
    seconds: int({ help: "length of each traffic window; iperf3 omits its first second from windows of 3 s or more (slow start is not the steady state)", min: 1, max: 60, shown: `${FULL.seconds}; ${QUICK.seconds} with --quick` }), // prettier-ignore
    grow: int({ help: "reach the size in steps of N endpoints (0: seed all, then one cold start)", min: 0, max: 2000, default: 0 }), // prettier-ignore
    pin: custom({ help: "CPUs of the traffic client and server, or none", value: "C,S|none", default: undefined as string | undefined, shown: "the bench's own choice", parse: (v) => (parsePin(v), v) }), // prettier-ignore
    prefix: text({ help: "stem of the scratch namespaces (several runs side by side)", value: "STEM", default: "mbs", pattern: /^[a-z][a-z0-9]{1,5}$/, what: "2-6 lower-case letters and digits, a letter first" }), // prettier-ignore
    "ipcache-check": choice({ help: "the ipcache figure A/B, background check running vs not", choices: ["ab"], shown: "off" }), // prettier-ignore
  },
} as const;

/** The sizes, settings and namespace stem of a run, from its checked flags. */
export function scaleSettings(f: FlagValues<typeof SCALE_SPEC.flags>): {
  sizes: number[];
  settings: Settings;
  stem: string;
} {
  const base = f.quick ? QUICK : FULL;
  const settings: Settings = {
    ...base,
    skip: new Set(f.skip),
    applies: f.applies ?? base.applies,
    ...(f["cap-seconds"] === undefined ? {} : { capMs: f["cap-seconds"] * 1000 }),
    ...(f.grow > 0 ? { grow: f.grow } : {}),
    pin: parsePin(f.pin),
    ...(f["ipcache-check"] === "ab" ? { ipcacheCheck: "ab" as const } : {}),
    ...(f.creates !== undefined && f.creates > 0 ? { creates: f.creates } : {}),
    ...(f.restarts !== undefined ? { restarts: f.restarts } : {}),
    ...(f.rounds !== undefined && f.rounds > 0 ? { rounds: f.rounds } : {}),
    ...(f.seconds !== undefined ? { seconds: f.seconds } : {}),
  };
  return { sizes: [...f.endpoints], settings, stem: f.prefix };
}
