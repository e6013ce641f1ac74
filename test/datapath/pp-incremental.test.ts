/**
 * pp: property — random sequences of changes applied incrementally through the
 * real Reconciler leave the kernel exactly as a from-scratch compile of the
 * final state applied into a fresh namespace would (issue 10 item 7).
 *
 *   random ops ──> PolicyEngine (+ remote ipcache) ──buildDatapathState──> Reconciler.apply  (ns "-inc", per step)
 *   final state ──────────────────────────────────────────────────────────> fresh Reconciler (ns "-ref", once)
 *   nft -j -s list table (both) ──normalise──> deepEqual
 *
 * Then: a fresh Reconciler reading the incrementally built table plans zero
 * operations (a restarted agent changes nothing), and a "has teeth" check: one
 * element removed behind the reconciler's back is caught by the comparison and
 * by the restart plan.
 *
 * Needs root. Reproduce a failure with the seed it prints:
 *   MEMBRANE_PROPERTY_SEED=<seed> node scripts/run-tests.mjs pp-incremental
 * Soak: MEMBRANE_PROPERTY_RUNS=200 MEMBRANE_PROPERTY_STEPS=40.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { buildDatapathState, type LocalEndpoint } from "../../src/agent/desired.js";
import { runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix, createNetns } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathState } from "../../src/datapath/types.js";
import { parsePrefix } from "../../src/labels/cidr.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const SEED = Number(process.env["MEMBRANE_PROPERTY_SEED"] ?? 20261204);
const RUNS = Number(process.env["MEMBRANE_PROPERTY_RUNS"] ?? 20);
const STEPS = Number(process.env["MEMBRANE_PROPERTY_STEPS"] ?? 15);
const PROXY = { ipv4: "10.0.0.254", l7Port: 15001, dnsPort: 15053, gid: 1337 };
const TABLE = "membrane";
const APPS = ["a", "b", "c"] as const;
const SLOTS = 5;

const cnp = (name: string, spec: string): string =>
  `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n${spec}`;

/** The policy catalogue: L3/L4, deny, CIDR peers with except, port ranges, L7 (HTTP, DNS) redirects. */
const POLICIES: readonly string[] = [
  cnp(
    "p0",
    `  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n`,
  ),
  cnp(
    "p1",
    `  endpointSelector: {matchLabels: {app: a}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {app: c}}]}]\n`,
  ),
  cnp(
    "p2",
    `  endpointSelector: {matchLabels: {app: b}}\n  egress: [{toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]\n`,
  ),
  cnp(
    "p3",
    `  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], toPorts: [{ports: [{port: "8000", endPort: 8100, protocol: TCP}]}]}]\n`,
  ),
  cnp(
    "p4",
    `  endpointSelector: {matchLabels: {app: c}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: "/x"}]}}]}]\n`,
  ),
  cnp(
    "p5",
    `  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toEndpoints: [{}], toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]}]\n`,
  ),
  cnp(
    "p6",
    `  endpointSelector: {matchLabels: {app: c}}\n  egressDeny: [{toCIDR: [198.51.100.0/24]}]\n  egress: [{toEntities: [world]}]\n`,
  ),
  cnp(
    "p7",
    `  endpointSelector: {matchLabels: {app: b}}\n  ingress: [{fromCIDR: [10.200.0.0/16, "2001:db8::/32"], toPorts: [{ports: [{port: "5000", endPort: 5010, protocol: UDP}, {port: "9000", protocol: SCTP}]}]}]\n`,
  ),
  // Audit mode: would-be drops are logged and let through (audit chains, auditDefault).
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p8, namespace: default, annotations: {policy.membrane.io/audit: "true"}}
spec:
  endpointSelector: {matchLabels: {app: b}}
  egressDeny: [{toEndpoints: [{matchLabels: {app: a}}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
  egress: [{toEndpoints: [{matchLabels: {app: c}}]}]
`,
];

/** Remote prefixes (ipcache churn), overlapping the policies' CIDRs and each other. */
const REMOTE = [
  "10.200.1.0/24",
  "10.200.1.7/32",
  "192.0.2.64/26",
  "198.51.100.7/32",
  "172.16.0.0/12",
  "2001:db8:1::/48",
  "2001:db8:1::5/128",
] as const;
const REMOTE_IDS = [30001, 30002, 30003] as const;

type Op =
  | { op: "ep"; slot: number; app: number }
  | { op: "delEp"; slot: number }
  | { op: "pol"; i: number }
  | { op: "delPol"; i: number }
  | { op: "remote"; i: number; id: number }
  | { op: "delRemote"; i: number }
  | { op: "proxy"; on: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("ep" as const), slot: fc.nat(SLOTS - 1), app: fc.nat(2) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("delEp" as const), slot: fc.nat(SLOTS - 1) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("pol" as const), i: fc.nat(POLICIES.length - 1) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("delPol" as const), i: fc.nat(POLICIES.length - 1) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("remote" as const),
      i: fc.nat(REMOTE.length - 1),
      id: fc.nat(REMOTE_IDS.length - 1),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("delRemote" as const), i: fc.nat(REMOTE.length - 1) }),
  },
  // The node's proxy starts or stops: L7 segments become redirects or fail-closed drops.
  { weight: 1, arbitrary: fc.record({ op: fc.constant("proxy" as const), on: fc.boolean() }) },
);

/** The world the ops build: an engine, as the agent holds it, and the node's local endpoints. */
class World {
  readonly engine: PolicyEngine;
  readonly local = new Map<number, LocalEndpoint>();
  private proxy = true;

  constructor(dualStack: boolean) {
    this.engine = new PolicyEngine({ config: { dualStack } });
  }

  private readonly parsed = POLICIES.map((y, i) => parsePolicies(y, `p${i}.yaml`));

  step(o: Op): void {
    switch (o.op) {
      case "ep": {
        const name = `ep${o.slot}`;
        const ipv4 = `10.1.0.${10 + o.slot}`;
        const ipv6 = `fd00:1::${10 + o.slot}`;
        // A known slot is relabelled (same addresses), a free one is created.
        this.engine.upsertEndpoint({
          name,
          namespace: "default",
          labels: { app: APPS[o.app] as string },
          ips: [ipv4, ipv6],
        });
        this.local.set(o.slot, {
          namespace: "default",
          name,
          id: o.slot + 1,
          hostIfname: `pph${o.slot}`,
          ipv4,
          ...(o.slot % 2 === 0 ? { ipv6 } : {}),
        });
        return;
      }
      case "delEp":
        if (!this.local.delete(o.slot)) return;
        this.engine.deleteEndpoint("default", `ep${o.slot}`);
        return;
      case "pol":
        for (const p of this.parsed[o.i] ?? []) this.engine.upsertPolicy(p);
        return;
      case "delPol":
        for (const p of this.parsed[o.i] ?? []) this.engine.deletePolicy(p.ref);
        return;
      case "remote":
        this.engine.ipcache.setPrefix(prefix(REMOTE[o.i]), REMOTE_IDS[o.id] as number, "cidr");
        return;
      case "delRemote":
        this.engine.ipcache.deletePrefix(prefix(REMOTE[o.i]));
        return;
      case "proxy":
        this.proxy = o.on;
        return;
    }
  }

  state(): DatapathState {
    const eps = [...this.local.values()].sort((a, b) => a.id - b.id);
    return buildDatapathState(
      this.engine,
      eps,
      this.proxy ? { proxy: PROXY, authAvailable: false } : { authAvailable: false },
    );
  }
}

function prefix(s: string | undefined): NonNullable<ReturnType<typeof parsePrefix>> {
  const p = s === undefined ? undefined : parsePrefix(s);
  if (!p) throw new Error(`bad test prefix ${String(s)}`);
  return p;
}

type Json = unknown;
const isObj = (v: Json): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function stripHandles(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripHandles);
  if (!isObj(v)) return v;
  const out: Record<string, Json> = {};
  for (const k of Object.keys(v).sort()) if (k !== "handle") out[k] = stripHandles(v[k]);
  return out;
}

/**
 * The table as comparable data: every map, set and chain declaration (elements
 * sorted: their order in a listing follows insertion history), and each
 * chain's rules in order (rule order is semantics). Handles are dropped.
 */
async function readTable(netns: string): Promise<{ objects: string[]; rules: Record<string, string[]> }> {
  const r = await runRaw(["nft", "-j", "-s", "list", "table", "inet", TABLE], { netns });
  if (r.status !== 0) throw new Error(`nft list table in ${netns}: ${r.stderr}`);
  const doc = JSON.parse(r.stdout) as { nftables: Json[] };
  const objects: string[] = [];
  const rules: Record<string, string[]> = {};
  for (const item of doc.nftables) {
    if (!isObj(item) || "metainfo" in item) continue;
    const clean = stripHandles(item) as Record<string, Json>;
    const rule = clean["rule"];
    if (isObj(rule)) {
      (rules[String(rule["chain"])] ??= []).push(JSON.stringify(rule));
      continue;
    }
    for (const k of ["map", "set"]) {
      const m = clean[k];
      if (isObj(m) && Array.isArray(m["elem"])) m["elem"] = m["elem"].map((e) => JSON.stringify(e)).sort();
    }
    objects.push(JSON.stringify(clean));
  }
  objects.sort();
  return { objects, rules };
}

/** The first difference between two read-back tables, readably, or undefined. */
function firstDifference(
  inc: Awaited<ReturnType<typeof readTable>>,
  ref: Awaited<ReturnType<typeof readTable>>,
): string | undefined {
  const a = new Set(inc.objects);
  const b = new Set(ref.objects);
  const onlyInc = inc.objects.filter((o) => !b.has(o));
  const onlyRef = ref.objects.filter((o) => !a.has(o));
  if (onlyInc.length || onlyRef.length)
    return `objects only incremental: ${onlyInc.join("\n")}\nobjects only from-scratch: ${onlyRef.join("\n")}`;
  for (const c of new Set([...Object.keys(inc.rules), ...Object.keys(ref.rules)])) {
    const x = (inc.rules[c] ?? []).join("\n");
    const y = (ref.rules[c] ?? []).join("\n");
    if (x !== y) return `chain ${c} rules differ:\nincremental:\n${x}\nfrom scratch:\n${y}`;
  }
  return undefined;
}

/** Deletes one element of the first non-empty map behind the reconciler's back; returns which. */
async function corruptOneElement(netns: string): Promise<string> {
  const r = await runRaw(["nft", "-j", "list", "table", "inet", TABLE], { netns });
  const doc = JSON.parse(r.stdout) as { nftables: Json[] };
  for (const item of doc.nftables) {
    const m = isObj(item) ? item["map"] : undefined;
    if (!isObj(m) || !Array.isArray(m["elem"]) || m["elem"].length === 0) continue;
    const first = m["elem"][0] as Json;
    const key = Array.isArray(first) ? first[0] : first;
    const del = {
      nftables: [{ delete: { element: { family: "inet", table: TABLE, name: m["name"], elem: [key] } } }],
    };
    // `nft -j -f -` cannot read JSON from a pipe (nft 1.0.6: "Could not open file /dev/stdin"): use a file.
    const dir = await mkdtemp(join(tmpdir(), "pp-"));
    try {
      await writeFile(join(dir, "del.json"), JSON.stringify(del));
      const d = await runRaw(["nft", "-j", "-f", join(dir, "del.json")], { netns });
      if (d.status !== 0) throw new Error(`corrupt: ${d.stderr}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return `${String(m["name"])} ${JSON.stringify(key)}`;
  }
  throw new Error("no element to remove");
}

const skip = rootSkipReason();

describe("pp incremental datapath equals a from-scratch compile (needs root)", { skip }, () => {
  const pfx = uniquePrefix("pp");
  const incNs = `${pfx}-inc`;
  const refNs = `${pfx}-ref`;

  before(async () => {
    await createNetns(incNs);
    await createNetns(refNs);
  });
  after(async () => {
    await cleanupPrefix(pfx + "-");
  });

  /** Runs one sequence; returns the world, the final state and the incremental reconciler. */
  async function runSequence(
    ops: readonly Op[],
    trustMs?: number,
    dualStack = false,
  ): Promise<{ final: DatapathState; steps: number; ops: number }> {
    for (const ns of [incNs, refNs]) await runRaw(["nft", "delete", "table", "inet", TABLE], { netns: ns });
    const world = new World(dualStack);
    const inc = new Reconciler({ netns: incNs, table: TABLE, ...(trustMs !== undefined ? { trustMs } : {}) });
    let kernelOps = 0;
    for (const o of ops) {
      world.step(o);
      kernelOps += (await inc.apply(world.state())).ops;
    }
    const final = world.state();
    // The last step may have changed nothing: make sure a table exists to compare.
    if (ops.length === 0) await inc.apply(final);
    return { final, steps: ops.length, ops: kernelOps };
  }

  test("random sequences of endpoint, policy and ipcache changes leave the kernel as a from-scratch compile", async () => {
    const t0 = performance.now();
    let totalOps = 0;
    let totalSteps = 0;
    let sequences = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.boolean(),
          fc.array(opArb, { minLength: STEPS, maxLength: STEPS }),
          async (dual, ops) => {
            // Every other sequence plans each step against a fresh read-back of the kernel (trustMs 0)
            // instead of the table applied last (the default): both incremental paths are checked.
            const { final, ops: n } = await runSequence(ops, sequences++ % 2 === 1 ? 0 : undefined, dual);
            totalOps += n;
            totalSteps += ops.length;
            await new Reconciler({ netns: refNs, table: TABLE }).apply(final);
            const diff = firstDifference(await readTable(incNs), await readTable(refNs));
            if (diff !== undefined) throw new Error(diff);
            // A restarted agent (fresh Reconciler, reads the kernel back) finds nothing to do.
            const restart = await new Reconciler({ netns: incNs, table: TABLE }).plan(final);
            assert.equal(restart.ops, 0, `restart plans ${restart.ops} ops:\n${restart.lines.join("\n")}`);
          },
        ),
        { seed: SEED, numRuns: RUNS, includeErrorInReport: true },
      );
    } catch (e) {
      console.error(`property failed with MEMBRANE_PROPERTY_SEED=${SEED} (runs ${RUNS}, steps ${STEPS})`);
      throw e;
    }
    const ms = Math.round(performance.now() - t0);
    console.log(
      `pp: ${sequences} sequences, ${totalSteps} steps (${STEPS} each), ${totalOps} kernel ops, ${ms} ms`,
    );
  });

  test("has teeth: an element removed behind the reconciler's back is caught by the comparison and by a restart", async () => {
    const ops: Op[] = [
      { op: "ep", slot: 0, app: 0 },
      { op: "ep", slot: 1, app: 1 },
      { op: "pol", i: 0 },
      { op: "pol", i: 2 },
      { op: "remote", i: 0, id: 0 },
    ];
    const { final } = await runSequence(ops);
    await new Reconciler({ netns: refNs, table: TABLE }).apply(final);
    assert.equal(firstDifference(await readTable(incNs), await readTable(refNs)), undefined);
    const removed = await corruptOneElement(incNs);
    const diff = firstDifference(await readTable(incNs), await readTable(refNs));
    assert.ok(diff !== undefined, `removing ${removed} went unnoticed`);
    const restart = await new Reconciler({ netns: incNs, table: TABLE }).plan(final);
    assert.ok(restart.ops > 0, `a restart plans nothing after removing ${removed}`);
    // ... and applying that plan repairs the table to the from-scratch one.
    await new Reconciler({ netns: incNs, table: TABLE }).apply(final);
    assert.equal(firstDifference(await readTable(incNs), await readTable(refNs)), undefined);
  });
});
