/**
 * The scale bench's command line (scale.ts): sizes, FULL or --quick settings,
 * and the flags that take one figure apart (--skip, --applies, --creates,
 * --cap-seconds, --grow, --pin, --prefix). A bad flag stops the bench before
 * anything is made, naming the flag.
 */
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

/** The flags this bench knows (a misspelt flag would otherwise be ignored and the run taken with defaults). */
const KNOWN = [
  "--endpoints=",
  "--quick",
  "--cap-seconds=",
  "--skip=",
  "--applies=",
  "--creates=",
  "--restarts=",
  "--rounds=",
  "--seconds=",
  "--grow=",
  "--pin=",
  "--prefix=",
  "--ipcache-check=",
];

export const SCALE_USAGE = `usage: node dist/bench/scale.js [--endpoints=250,1000] [--quick] [--cap-seconds=300]
         [--skip=apply,ipcache,create,traffic] [--applies=N] [--creates=N] [--restarts=N] [--rounds=N]
         [--seconds=N] [--grow=N] [--pin=C,S|none] [--prefix=mbs] [--ipcache-check=ab]
  Needs root. One JSON line per figure on stdout, progress on stderr.
  --rounds=N   ABBA rounds of the traffic figures (default 8; more rounds, a steadier median)
  --seconds=N  length of each traffic window (default 5, --quick 1; iperf3 omits its first second
               from windows of 3 s or more: slow start is not the steady state)`;

export function parseScaleArgs(argv: readonly string[]): {
  sizes: number[];
  settings: Settings;
  stem: string;
} {
  const unknown = argv.filter((a) => !KNOWN.some((k) => (k.endsWith("=") ? a.startsWith(k) : a === k)));
  if (unknown.length > 0) throw new Error(`${unknown.join(" ")}: unknown\n${SCALE_USAGE}`);
  const sizesArg = argv.find((a) => a.startsWith("--endpoints="))?.slice("--endpoints=".length) ?? "250,1000";
  const sizes = sizesArg.split(",").map(Number);
  if (sizes.some((x) => !Number.isInteger(x) || x < 1 || x > 2000))
    throw new Error(`--endpoints=${sizesArg}: give sizes from 1 to 2000, separated by commas`);
  const cap = argv.find((a) => a.startsWith("--cap-seconds="))?.slice("--cap-seconds=".length);
  const base = argv.includes("--quick") ? QUICK : FULL;
  const grow = Number(argv.find((a) => a.startsWith("--grow="))?.slice("--grow=".length) ?? 0);
  const appliesArg = argv.find((a) => a.startsWith("--applies="))?.slice("--applies=".length);
  const appliesN = appliesArg === undefined ? base.applies : Number(appliesArg);
  if (!Number.isInteger(appliesN) || appliesN < 1 || appliesN > 1000)
    throw new Error(`--applies=${appliesArg}: give a whole number from 1 to 1000`);
  const skip = argv.find((a) => a.startsWith("--skip="))?.slice("--skip=".length);
  const names = skip === undefined ? [] : skip.split(",");
  const bad = names.filter((x) => !["apply", "ipcache", "create", "traffic"].includes(x));
  if (bad.length > 0)
    throw new Error(`--skip=${skip}: ${bad.join(",")} unknown (apply, ipcache, create, traffic)`);
  const settings: { -readonly [K in keyof Settings]: Settings[K] } = {
    ...base,
    skip: new Set(names),
    applies: appliesN,
    ...(cap !== undefined && Number(cap) > 0 ? { capMs: Number(cap) * 1000 } : {}),
    ...(Number.isInteger(grow) && grow > 0 ? { grow } : {}),
    pin: parsePin(argv.find((a) => a.startsWith("--pin="))?.slice("--pin=".length)),
  };
  const check = argv.find((a) => a.startsWith("--ipcache-check="))?.slice("--ipcache-check=".length);
  if (check !== undefined && check !== "ab") throw new Error(`--ipcache-check=${check}: only "ab" is known`);
  if (check === "ab") settings.ipcacheCheck = "ab";
  const stem = argv.find((a) => a.startsWith("--prefix="))?.slice("--prefix=".length) ?? "mbs";
  if (!/^[a-z][a-z0-9]{1,5}$/.test(stem))
    throw new Error(`--prefix=${stem}: give 2-6 lower-case letters and digits, a letter first`);
  const creates = Number(argv.find((a) => a.startsWith("--creates="))?.slice("--creates=".length) ?? 0);
  if (!Number.isInteger(creates) || creates < 0 || creates > 1000)
    throw new Error(`--creates=${creates}: give 1 to 1000 (0: the default of the mode)`);
  if (creates > 0) settings.creates = creates;
  const restarts = Number(argv.find((a) => a.startsWith("--restarts="))?.slice("--restarts=".length) ?? -1);
  if (restarts !== -1 && (!Number.isInteger(restarts) || restarts < 0 || restarts > 100))
    throw new Error(`--restarts=${restarts}: give 0 to 100`);
  if (restarts >= 0) settings.restarts = restarts;
  const rounds = Number(argv.find((a) => a.startsWith("--rounds="))?.slice("--rounds=".length) ?? 0);
  if (!Number.isInteger(rounds) || rounds < 0 || rounds > 100)
    throw new Error(`--rounds=${rounds}: give 1 to 100 (0: the default of the mode)`);
  if (rounds > 0) settings.rounds = rounds;
  const seconds = Number(argv.find((a) => a.startsWith("--seconds="))?.slice("--seconds=".length) ?? 0);
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 60)
    throw new Error(`--seconds=${seconds}: give 1 to 60 (0: the default of the mode)`);
  if (seconds > 0) settings.seconds = seconds;
  return { sizes, settings, stem };
}
