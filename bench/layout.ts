/**
 * Which nftables layout costs what at 1,000 endpoints and 50,000 ipcache
 * entries (issue 10, item 1). Needs root; builds tables directly with nft
 * scripts in a scratch node namespace (not through the agent).
 *
 *   node dist/bench/layout.js [--rounds 3] [--endpoints 1000] [--pods 50000] [--flows 30000]
 *                             [--samples FILE: every sample appended as it is measured] [--lookup-only]
 *   npm run bench -- layout
 *
 * Candidates (bench/layout-nft.ts): policy maps A (per endpoint, 4 per
 * direction, today), A2 (per endpoint, only the non-empty ones), B (shared,
 * keyed by the endpoint's address); ipcache flat (one flattened interval map,
 * today) or hash (a hash map of the /32s + a small interval map of CIDRs).
 * Per candidate: full load, one-element updates, removing one endpoint,
 * read-backs, and new flows per second through the node (bench/layout-traffic.ts)
 * against no table and a conntrack-only table. Conditions alternate within
 * each round (A, A2, B, ... then again), and medians over the rounds are
 * reported: one JSON line per figure on stdout, a table on stderr.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync } from "node:fs";
import { cleanupPrefix, createNetns } from "../src/datapath/netns.js";
import { FIRST_IDENTITY, IDENTITIES, PROTO_TCP, makeWorkload, type Workload } from "./layout-model.js";
import {
  endpointMaps,
  ipcacheDeltaScript,
  ipcacheElements,
  ipcacheMapNames,
  policyElementScript,
  removeEndpointScript,
  tableScript,
  tableStats,
  type Candidate,
  type IpcacheLayout,
} from "./layout-nft.js";
import { median, nftJson, nftScript, runIn, type Timed } from "./layout-run.js";
import {
  chainCount,
  createTrafficLab,
  destroyTrafficLab,
  sendFlows,
  trafficSkipReason,
  type TrafficLab,
} from "./layout-traffic.js";
import { benchArgs, flag, int, text } from "./cli.js";

const TABLE = "mbl";
const out = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: "layout", ...o }));

const { flags } = benchArgs({
  script: "layout",
  runner: "layout",
  measures: "Which nftables layout costs what at 1,000 endpoints and 50,000 ipcache entries: per candidate (policy maps A, A2, B; ipcache flat or hash) full load, one-element updates, removing an endpoint, read-backs, and new flows/s through the node, conditions alternating within each round (~40 min). One JSON line per figure, a table on stderr.", // prettier-ignore
  root: "a scratch node namespace and nftables tables built directly",
  flags: {
    rounds: int({ help: "rounds (each runs every candidate)", min: 1, max: 100, default: 3 }),
    endpoints: int({ help: "endpoints", min: 1, max: 100_000, default: 1000 }),
    pods: int({ help: "remote pods in the ipcache", min: 1, max: 1_000_000, default: 50_000 }),
    flows: int({ help: "new flows per traffic sample", min: 1, max: 10_000_000, default: 30_000 }),
    samples: text({ help: "append every sample to FILE as it is measured", value: "FILE", shown: "none", pattern: /^[^\0]+$/, what: "a file name" }), // prettier-ignore
    "lookup-only": flag("load each candidate and measure the packet path only (no updates, no read-backs)"),
  },
});

const CANDIDATES: Candidate[] = [
  { name: "A", policy: "A", ipcache: "flat" },
  { name: "A2", policy: "A2", ipcache: "flat" },
  { name: "B", policy: "B", ipcache: "flat" },
  { name: "A2+hash", policy: "A2", ipcache: "hash" },
  { name: "B+hash", policy: "B", ipcache: "hash" },
];

/** samples[condition][figure] */
const samples = new Map<string, Map<string, number[]>>();
const units = new Map<string, string>();
/** --lookup-only: load each candidate and measure the packet path only (no updates, no read-backs). */
const lookupOnly = flags["lookup-only"];
const samplesFile = flags.samples;
function record(cond: string, figure: string, value: number, unit = "ms"): void {
  // Every sample as it comes (--samples FILE): a long run that is stopped keeps what it measured.
  if (samplesFile)
    appendFileSync(samplesFile, JSON.stringify({ candidate: cond, figure, value, unit }) + "\n");
  const m = samples.get(cond) ?? new Map<string, number[]>();
  samples.set(cond, m);
  m.set(figure, [...(m.get(figure) ?? []), value]);
  units.set(figure, unit);
}
function recordTimed(cond: string, figure: string, t: Timed, cpu = false): void {
  record(cond, figure, t.ms);
  if (cpu) {
    record(cond, `${figure}.user`, t.userMs);
    record(cond, `${figure}.sys`, t.sysMs);
  }
}

interface Prepared {
  c: Candidate;
  script: string;
  ipcacheAdd: string;
  ipcacheDel: string;
}

function prepare(c: Candidate, w: Workload, deltas: Map<IpcacheLayout, [string, string]>): Prepared {
  const d = deltas.get(c.ipcache);
  if (!d) throw new Error(`no ipcache delta for ${c.ipcache}`);
  return { c, script: tableScript(c, w, TABLE), ipcacheAdd: d[0], ipcacheDel: d[1] };
}

async function traffic(lab: TrafficLab | undefined, cond: string, flows: number): Promise<void> {
  if (!lab) return;
  for (let i = 0; i < 2; i++) {
    const r = await sendFlows(lab, flows);
    record(cond, "new-flows", r.pps, "flows/s");
    record(cond, "flow-cpu", r.cpuUsPerPacket, "us/packet");
    record(cond, "delivered", r.received / r.sent, "fraction");
  }
}

async function measureCandidate(
  p: Prepared,
  w: Workload,
  node: string,
  lab: TrafficLab | undefined,
  round: number,
  flows: number,
): Promise<void> {
  const { c } = p;
  recordTimed(c.name, "load", nftScript(node, p.script), true);
  if (lab) {
    await traffic(lab, c.name, flows);
    // Both ends' allow chains counted the flows: the lookups matched.
    const inHits = chainCount(node, TABLE, "e2_in_a9");
    const outHits = chainCount(node, TABLE, "e1_out_a9");
    record(c.name, "matched", Math.min(inHits, outHits) / (2 * flows), "fraction");
  }
  if (lookupOnly) {
    nftScript(node, `delete table inet ${TABLE}\n`);
    return;
  }
  const ep = w.endpoints[499];
  const gone = w.endpoints[599 + round];
  if (!ep || !gone) throw new Error("the workload needs at least 600 + rounds endpoints");
  // Read-backs.
  recordTimed(c.name, "list-table", nftJson(node, ["list", "table", "inet", TABLE]), true);
  const oneMap = c.policy === "B" ? "in_id" : `e${ep.id}_in_id`;
  recordTimed(c.name, "list-one-map", nftJson(node, ["list", "map", "inet", TABLE, oneMap]), true);
  let epMs = 0;
  for (const dir of ["out", "in"] as const)
    for (const m of endpointMaps(c.policy, ep, dir))
      epMs += nftJson(node, ["list", "map", "inet", TABLE, m]).ms;
  record(c.name, "list-endpoint-maps", epMs);
  let ipcMs = 0;
  for (const m of ipcacheMapNames(c.ipcache)) ipcMs += nftJson(node, ["list", "map", "inet", TABLE, m]).ms;
  record(c.name, "list-ipcache", ipcMs);
  // Updates: one element each, in its own transaction.
  const identity = FIRST_IDENTITY + IDENTITIES + 1; // an identity no endpoint uses yet
  const rule = ep.ingress[0]?.rule ?? 1;
  const el = { identity, proto: PROTO_TCP, lo: 7777, hi: 7777, rule };
  for (let i = 0; i < 3; i++) {
    recordTimed(
      c.name,
      "add-policy-element",
      nftScript(node, policyElementScript(c, TABLE, ep, el, "add")),
      true,
    );
    recordTimed(
      c.name,
      "remove-policy-element",
      nftScript(node, policyElementScript(c, TABLE, ep, el, "delete")),
      true,
    );
    recordTimed(c.name, "add-ipcache-entry", nftScript(node, p.ipcacheAdd), true);
    recordTimed(c.name, "remove-ipcache-entry", nftScript(node, p.ipcacheDel), true);
  }
  recordTimed(c.name, "remove-endpoint", nftScript(node, removeEndpointScript(c, TABLE, gone)), true);
  recordTimed(c.name, "delete-table", nftScript(node, `delete table inet ${TABLE}\n`));
}

/** The medians so far, as a table on stderr. */
function table(conds: string[]): void {
  const figures = [...units.keys()];
  const w = 12;
  const lines = [["figure (median)".padEnd(28), ...conds.map((c) => c.padStart(w))].join("")];
  for (const f of figures) {
    if (f.endsWith(".user") || f.endsWith(".sys")) continue;
    const cells = conds.map((c) => {
      const xs = samples.get(c)?.get(f);
      if (!xs || xs.length === 0) return "-".padStart(w);
      const v = median(xs);
      const s = units.get(f) === "fraction" ? v.toFixed(3) : v >= 100 ? v.toFixed(0) : v.toFixed(1);
      return s.padStart(w);
    });
    lines.push([`${f} (${units.get(f)})`.padEnd(28), ...cells].join(""));
  }
  process.stderr.write(lines.join("\n") + "\n");
}

/** One JSON line per figure (median over the rounds, with the samples), then the table. */
function report(conds: string[]): void {
  for (const cond of conds)
    for (const [f, xs] of samples.get(cond) ?? []) {
      if (xs.length === 0) continue;
      out({
        candidate: cond,
        figure: f,
        value: Math.round(median(xs) * 100) / 100,
        unit: units.get(f),
        n: xs.length,
        samples: xs.map((x) => Math.round(x * 10) / 10),
      });
    }
  table(conds);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    out({ skipped: "needs root (network namespaces, nftables)" });
    return;
  }
  const { rounds, flows } = flags;
  const w = makeWorkload(flags.endpoints, flags.pods);
  const prefix = "mbl" + randomBytes(3).toString("hex");
  const cleanup = (): Promise<string[]> => cleanupPrefix(prefix);
  process.on("SIGINT", () => {
    void cleanup().finally(() => process.exit(130));
  });
  let lab: TrafficLab | undefined;
  try {
    const skip = trafficSkipReason();
    const [s, r] = w.endpoints;
    if (!s || !r) throw new Error("needs at least two endpoints");
    if (skip) out({ skipped: `packet path: ${skip}` });
    else {
      lab = await createTrafficLab(prefix, [s.ipv4, r.ipv4]);
      s.ifname = lab.sender.ifname;
      r.ifname = lab.receiver.ifname;
    }
    const node = lab?.node ?? `${prefix}-node`;
    if (!lab) await createNetns(node);
    const newPod = { prefix: "10.64.5.230/32", identity: FIRST_IDENTITY + 300 };
    const deltas = new Map<IpcacheLayout, [string, string]>();
    for (const layout of ["flat", "hash"] as const) {
      const before = ipcacheElements(layout, w.ipcache);
      const after = ipcacheElements(layout, [...w.ipcache, newPod]);
      deltas.set(layout, [
        ipcacheDeltaScript(TABLE, before, after),
        ipcacheDeltaScript(TABLE, after, before),
      ]);
    }
    const prepared = CANDIDATES.map((c) => prepare(c, w, deltas));
    for (const p of prepared) out({ candidate: p.c.name, figure: "table", ...tableStats(p.c, w) });
    const ctOnly = [
      `table inet ${TABLE} {`,
      "\tchain pre_c {",
      "\t\ttype filter hook prerouting priority -150; policy accept;",
      "\t\tct state established,related accept",
      "\t\tct state invalid drop",
      "\t}",
      "}",
    ].join("\n");
    const conds = ["none", "ct-only", ...CANDIDATES.map((c) => c.name)];
    for (let round = 0; round < rounds; round++) {
      process.stderr.write(`layout: round ${round + 1}/${rounds}\n`);
      for (let i = 0; i < 3; i++) recordTimed("none", "nft-noop", runIn(node, ["nft", "list", "tables"]));
      await traffic(lab, "none", flows);
      nftScript(node, ctOnly + "\n");
      // Short UDP timeout: earlier runs' entries expire instead of filling the conntrack table.
      runIn(node, ["sh", "-c", "echo 2 > /proc/sys/net/netfilter/nf_conntrack_udp_timeout || true"]);
      await traffic(lab, "ct-only", flows);
      nftScript(node, `delete table inet ${TABLE}\n`);
      for (const p of prepared) {
        process.stderr.write(`layout:   ${p.c.name}\n`);
        await measureCandidate(p, w, node, lab, round, flows);
      }
      if (round + 1 < rounds) table(conds);
    }
    report(conds);
  } finally {
    if (lab) destroyTrafficLab(lab);
    await cleanup();
  }
}

await main();
