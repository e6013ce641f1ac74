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
import { runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix, createNetns } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathState } from "../../src/datapath/types.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";
import { opArb, REMOTE_IDS, World, type Op } from "./pp-world.js";

const SEED = Number(process.env["MEMBRANE_PROPERTY_SEED"] ?? 20261204);
const RUNS = Number(process.env["MEMBRANE_PROPERTY_RUNS"] ?? 20);
const STEPS = Number(process.env["MEMBRANE_PROPERTY_STEPS"] ?? 15);
const TABLE = "membrane";

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

test("pp the random sequences exercise redirects, a stopped proxy, denies, audit, remote identities and deletions", () => {
  // A property is only as good as its generator: count what the CI sequences produce.
  const seen = { redirect: 0, deny: 0, audit: 0, remote: 0, dual: 0, epDeleted: 0, enforced: 0, proxyOff: 0 };
  fc.assert(
    fc.property(fc.boolean(), fc.array(opArb, { minLength: STEPS, maxLength: STEPS }), (dual, ops) => {
      const world = new World(dual);
      for (const o of ops) {
        const had = world.local.size;
        world.step(o);
        if (o.op === "delEp" && world.local.size < had) seen.epDeleted++;
        const st = world.state();
        const segs = st.endpoints.flatMap((e) => [...e.ingress.segments, ...e.egress.segments]);
        if (segs.some((x) => x.action === "redirect")) seen.redirect++;
        if (segs.some((x) => x.action === "deny")) seen.deny++;
        if (segs.some((x) => x.action === "audit") || st.endpoints.some((e) => e.egress.auditDefault))
          seen.audit++;
        if (st.ipcache.some((e) => (REMOTE_IDS as readonly number[]).includes(e.identity))) seen.remote++;
        if (st.endpoints.some((e) => e.ingress.enforced || e.egress.enforced)) seen.enforced++;
        if (dual) seen.dual++;
        if (st.proxy === undefined) seen.proxyOff++;
      }
    }),
    { seed: SEED, numRuns: RUNS },
  );
  for (const [k, n] of Object.entries(seen))
    assert.ok(n > 0, `no step produced ${k}: ${JSON.stringify(seen)}`);
});

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
    // ... and applying that plan repairs the table to the from-scratch one (trustMs 0: plan
    // against the kernel, not adopt it by its stamp, which the removal left as it was).
    await new Reconciler({ netns: incNs, table: TABLE, trustMs: 0 }).apply(final);
    assert.equal(firstDifference(await readTable(incNs), await readTable(refNs)), undefined);
  });

  test("has teeth: verify() finds an element removed behind the reconciler's back, and the next apply repairs it", async () => {
    const world = new World(false);
    for (const o of [
      { op: "ep", slot: 0, app: 0 },
      { op: "ep", slot: 1, app: 1 },
      { op: "pol", i: 0 },
      { op: "remoteEp", i: 1, app: 1 },
    ] as Op[])
      world.step(o);
    for (const ns of [incNs, refNs]) await runRaw(["nft", "delete", "table", "inet", TABLE], { netns: ns });
    const inc = new Reconciler({ netns: incNs, table: TABLE });
    const state = world.state();
    await inc.apply(state);
    assert.equal((await inc.verify()).drift, 0, "a fresh table matches");
    const removed = await corruptOneElement(incNs);
    const v = await inc.verify();
    assert.ok(v.drift > 0, `verify() missed the removal of ${removed}`);
    const r = await inc.apply(state);
    assert.ok(r.ops > 0, "the repair changed the kernel");
    await new Reconciler({ netns: refNs, table: TABLE }).apply(state);
    assert.equal(firstDifference(await readTable(incNs), await readTable(refNs)), undefined);
    assert.equal((await inc.verify()).drift, 0);
  });
});
