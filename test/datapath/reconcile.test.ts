/**
 * The Reconciler against a real nftables table in a scratch node namespace (needs root).
 * Interfaces named in the state need not exist: these tests read the table back.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply, nftListJson } from "../../src/datapath/exec.js";
import { keyText } from "../../src/datapath/model.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { compile } from "../../src/datapath/compile.js";
import { decodeElements, parseTable } from "../../src/datapath/readback.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../../src/datapath/types.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

function ep(id: number, segments: PolicySegment[], enforced = true): DatapathEndpoint {
  return {
    id,
    name: `ep${id}`,
    hostIfname: `veth${id}`,
    ipv4: `10.200.0.${id + 10}`,
    ipv6: `fd00:200::${id + 10}`,
    identity: 1000 + id,
    ingress: { enforced, segments },
    egress: { enforced: false, segments: [] },
  };
}
const allow = (identity: number, port: number, ruleId = 1): PolicySegment => ({
  identity,
  proto: 6,
  lo: port,
  hi: port,
  action: "allow",
  ruleId,
});

function baseState(): DatapathState {
  return {
    hostIdentity: 1,
    rules: [{ id: 1, text: "default/allow-web spec.ingress[0]" }],
    ipcache: [
      { prefix: "10.200.0.11/32", identity: 1001 },
      { prefix: "10.200.0.12/32", identity: 1002 },
      { prefix: "fd00:200::11/128", identity: 1001 },
    ],
    endpoints: [ep(1, [allow(1002, 80)]), ep(2, [allow(1001, 80), allow(0, 53)])],
  };
}

describe("Reconciler (root: nftables in a scratch namespace)", { skip: skip ?? false }, () => {
  const prefix = uniquePrefix("rc");
  let node: NamedNodeNetns;
  let nsOpt: { netns: string };
  const table = "mbrtest";
  const reconciler = (): Reconciler => new Reconciler({ netns: node.netns, table, logGroup: 7 });
  const readMap = async (name: string): Promise<string[]> => {
    const actual = parseTable(await nftListJson("inet", table, nsOpt));
    const desired = compile(baseState(), { table }).maps.find((m) => m.name === name);
    const raw = actual.maps.get(name);
    assert.ok(desired && raw, `map ${name} exists`);
    return decodeElements(desired, raw.rawElements)
      .map((e) => `${keyText(desired, e.key)} : ${e.value}`)
      .sort();
  };

  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
    nsOpt = { netns: node.netns };
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("apply creates the table in one transaction and the kernel holds the elements", async () => {
    const r = await reconciler().apply(baseState());
    assert.equal(r.changed, true);
    assert.deepEqual(await readMap("g2_in_id"), ["1001 . 6 . 80 : goto g2_in_a1"]);
    assert.deepEqual(await readMap("g2_in_any"), ["6 . 53 : goto g2_in_a1"]);
    assert.deepEqual(await readMap("ingress_ep"), ['"veth1" : jump e1_in', '"veth2" : jump e2_in']);
    assert.deepEqual(await readMap("ipcache4"), [
      "0.0.0.0-10.200.0.10 : 2",
      "10.200.0.11 : 1001",
      "10.200.0.12 : 1002",
      "10.200.0.13-255.255.255.255 : 2",
    ]);
  });

  test("re-applying the same state, also from a restarted reconciler, is zero ops", async () => {
    const r1 = reconciler();
    assert.deepEqual((await r1.apply(baseState())).ops, 0);
    assert.deepEqual((await reconciler().apply(baseState())).ops, 0);
    assert.deepEqual(await reconciler().diff(baseState()), []);
  });

  const changes: { name: string; change: (s: DatapathState) => void; lines: string[] }[] = [
    {
      name: "moving one segment to another port removes one element and adds one",
      change: (s) => (s.endpoints[1] = ep(2, [allow(1001, 443), allow(0, 53)])),
      lines: [
        "+ element g2_in_id 1001 . 6 . 443 : goto g2_in_a1",
        "- element g2_in_id 1001 . 6 . 80 : goto g2_in_a1",
      ],
    },
    {
      name: "turning an allow into a deny replaces the element and adds the deny chain",
      change: (s) => (s.endpoints[1] = ep(2, [{ ...allow(1001, 80, 1), action: "deny" }, allow(0, 53)])),
      lines: ["~ element g2_in_id 1001 . 6 . 80 : goto g2_in_r1", "+ chain g2_in_r1 (1 rules)"],
    },
    {
      name: "switching default deny off rewrites only that endpoint's policy group's chain",
      change: (s) => (s.endpoints[1] = ep(2, [allow(1001, 80), allow(0, 53)], false)),
      lines: ["~ chain g2_in (2 rules)"],
    },
    {
      name: "a new identity for one address changes one ipcache element",
      change: (s) => (s.ipcache[1] = { prefix: "10.200.0.12/32", identity: 1005 }),
      lines: ["~ element ipcache4 10.200.0.12 : 1005"],
    },
    {
      name: "removing an endpoint removes its chains and dispatch elements, and its group's maps and chains (it was the only member)",
      change: (s) => (s.endpoints = s.endpoints.slice(0, 1)),
      lines: [
        '- element egress_ep "veth2" : jump e2_out',
        '- element ingress_ep "veth2" : jump e2_in',
        "- element ingress_ep4 10.200.0.12 : jump e2_in",
        "- element ingress_ep6 fd00:200::12 : jump e2_in",
        '- element egress_est4 "veth2" . 10.200.0.12 : accept',
        '- element egress_est6 "veth2" . fd00:200::12 : accept',
        // Only the maps it had: the egress has no segments (no group), the ingress no ICMP ones.
        ...["g2_in_any", "g2_in_id"].map((m) => `- map ${m}`),
        "- chain e2_in",
        "- chain e2_out",
        "- chain g2_in",
        "- chain g2_in_a1",
      ],
    },
  ];
  for (const c of changes) {
    test(c.name, async () => {
      const r = reconciler();
      const next = baseState();
      c.change(next);
      assert.deepEqual(await r.diff(next), c.lines);
      const res = await r.apply(next);
      assert.equal(res.changed, true);
      assert.deepEqual(await r.diff(next), [], "the kernel now holds the new state");
      assert.equal((await r.apply(baseState())).changed, true, "and goes back");
      assert.deepEqual(await r.diff(baseState()), []);
    });
  }

  test("an element removed by hand is found by verify() and restored by the next apply", async () => {
    await nftApply(`delete element inet ${table} g2_in_any { 6 . 53 }\n`, nsOpt);
    const r = reconciler();
    // A new reconciler (a restarted agent) adopts the table by its stamp: no read-back, no change...
    assert.equal((await r.apply(baseState())).ops, 0);
    // ... and the background check finds the hand edit, which the next apply repairs.
    const v = await r.verify();
    assert.deepEqual(v.lines, ["+ element g2_in_any 6 . 53 : goto g2_in_a1"]);
    assert.equal((await r.apply(baseState())).ops, 1);
    assert.deepEqual(await readMap("g2_in_any"), ["6 . 53 : goto g2_in_a1"]);
    assert.equal((await r.verify()).drift, 0);
  });

  test("a rule added by hand to our chain is removed once verify() found it", async () => {
    await nftApply(`add rule inet ${table} e1_in accept\n`, nsOpt);
    assert.deepEqual(await reconciler().diff(baseState()), ["~ chain e1_in (3 rules)"]);
    const r = reconciler();
    await r.apply(baseState());
    assert.equal((await r.verify()).drift, 1);
    await r.apply(baseState());
    assert.deepEqual(await reconciler().diff(baseState()), []);
  });

  test("without trust (trustMs 0) every apply reads the kernel: a hand edit is repaired at once", async () => {
    await nftApply(`delete element inet ${table} g2_in_any { 6 . 53 }\n`, nsOpt);
    const r = new Reconciler({ netns: node.netns, table, logGroup: 7, trustMs: 0 });
    assert.equal((await r.apply(baseState())).ops, 1);
    assert.deepEqual(await readMap("g2_in_any"), ["6 . 53 : goto g2_in_a1"]);
  });

  test("concurrent applies are coalesced and the latest state wins", async () => {
    const r = reconciler();
    const states = [443, 444, 445].map((port) => {
      const s = baseState();
      s.endpoints[1] = ep(2, [allow(1001, port), allow(0, 53)]);
      return s;
    });
    const [first, second, third] = await Promise.all(states.map((s) => r.apply(s)));
    assert.ok(first && second && third);
    assert.equal(first.changed, true);
    assert.equal(second, third, "the waiting calls share one transaction");
    assert.deepEqual(await readMap("g2_in_id"), ["1001 . 6 . 445 : goto g2_in_a1"]);
    await r.apply(baseState());
  });

  test("a transaction the kernel rejects names the line and changes nothing", async () => {
    await assert.rejects(
      nftApply(
        `add element inet ${table} g2_in_any { 6 . 22 : return }\nadd element inet ${table} nosuchmap { 1 }\n`,
        nsOpt,
      ),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, "NFT_APPLY_FAILED");
        assert.match(e.message, /nosuchmap/);
        return true;
      },
    );
    assert.deepEqual(await readMap("g2_in_any"), ["6 . 53 : goto g2_in_a1"]);
  });

  test("10,000 elements: load from scratch and re-apply with one change (timings in diagnostics)", async (t) => {
    const big = (extraPort: number): DatapathState => {
      const segs: PolicySegment[] = [];
      for (let i = 0; i < 10_000; i++) segs.push(allow(256 + i, 80));
      segs.push(allow(20000, extraPort));
      return { ...baseState(), endpoints: [ep(1, segs)] };
    };
    const r = new Reconciler({ netns: node.netns, table: "mbrbig" });
    const load = await r.apply(big(81));
    const again = await r.apply(big(81));
    const one = await r.apply(big(82));
    t.diagnostic(
      `10k load: ${load.ops} ops in ${load.ms} ms; re-apply: ${again.ops} ops in ${again.ms} ms; one change: ${one.ops} ops in ${one.ms} ms`,
    );
    assert.equal(again.ops, 0);
    assert.equal(one.ops, 2);
    assert.ok(load.ms < 10_000 && one.ms < 5_000, "within generous bounds");
  });
  test("removing 10,000 interval elements, also right after a restart, rebuilds the maps instead of deleting element by element", async () => {
    const big = (n: number): DatapathState => {
      const segs: PolicySegment[] = [];
      const ipcache = [...baseState().ipcache];
      for (let i = 0; i < n; i++) {
        // A port range: single ports go to a hash map (segments.ts), ranges to the interval one.
        segs.push({ ...allow(16_777_216 + i, 80), hi: 81 });
        ipcache.push({ prefix: `11.${(i >> 8) & 255}.${i & 255}.0/24`, identity: 16_777_216 + i });
      }
      return { ...baseState(), ipcache, endpoints: [ep(1, [...segs, { ...allow(1002, 80), hi: 81 }])] };
    };
    const table = "mbrst";
    try {
      await new Reconciler({ netns: node.netns, table }).apply(big(10_000));
      // A restarted agent: no memory of what it applied, it plans against the kernel's readback.
      const restarted = new Reconciler({ netns: node.netns, table });
      const p = await restarted.plan(big(0));
      const deletes = p.script
        .split("\n")
        .filter((l) => /^delete element \S+ \S+ (ipcache4|g1_in_idr) /.test(l));
      assert.equal(deletes.length, 0, "no element-by-element deletion from the big interval maps");
      assert.ok(p.script.includes("flush map inet mbrst ipcache4\n"), "ipcache4 rebuilt");
      assert.ok(p.script.includes("flush map inet mbrst g1_in_idr\n"), "g1_in_idr rebuilt");
      assert.ok(p.ops >= 20_000, "every removed element still counts as one change");
      await restarted.apply(big(0));
      assert.deepEqual(await restarted.diff(big(0)), [], "the kernel holds exactly the small state");
      // One element less in a big map is still one deletion, not a rebuild.
      await restarted.apply(big(2_000));
      const one = await new Reconciler({ netns: node.netns, table }).plan(big(1_999));
      assert.ok(!one.script.includes("flush map"), "no rebuild for one element");
      assert.ok(
        one.script.includes("delete element inet mbrst ipcache4 { 11.7.207.0-11.7.207.255, "),
        one.script,
      );
    } finally {
      await nftApply(`delete table inet ${table}\n`, nsOpt).catch(() => undefined);
    }
  });
});
