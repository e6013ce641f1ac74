/**
 * The caches of the incremental path (no root: planning only): an incremental
 * plan equals the difference between two from-scratch compiles, whatever the
 * caches hold; a cache can never hand back something stale.
 *
 *   chain hashes (model.ts)     kept for frozen chains only; compiled chains are frozen
 *   element canon keys and key bytes (model.ts, nfnl/encode.ts): frozen elements only, bytes per map shape
 *   global part (incremental.ts) kept while globalKeyOf (its inputs, by content) is the same
 *   endpoint parts               kept while the endpoint is the same object with the same rule texts
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compileAll } from "../../src/datapath/compile.js";
import { appliedFromFull, planIncremental, type Applied } from "../../src/datapath/incremental.js";
import {
  chainHash,
  chainRulesWithHash,
  elementCanon,
  frozenElement,
  type NftChain,
  type NftElement,
  type NftMap,
} from "../../src/datapath/model.js";
import { encodeElement } from "../../src/datapath/nfnl/encode.js";
import { asActual, plan } from "../../src/datapath/plan.js";
import type { DatapathEndpoint, DatapathState } from "../../src/datapath/types.js";

const opts = { table: "membrane", logGroup: 1 };

const ep = (id: number, port: number): DatapathEndpoint => ({
  id,
  name: `ep${id}`,
  hostIfname: `veth${id}`,
  ipv4: `10.1.0.${id}`,
  identity: 1000 + id,
  ingress: {
    enforced: true,
    segments: [{ identity: 2000, proto: 6, lo: port, hi: port, action: "allow", ruleId: 1 }],
  },
  egress: { enforced: false, segments: [] },
});

const state = (endpoints: DatapathEndpoint[]): DatapathState => ({
  ipcache: [{ prefix: "192.168.0.0/16", identity: 16777217 }],
  endpoints,
  rules: [{ id: 1, text: "default/r1 ingress[0]" }],
  hostIdentity: 1,
});

function start(s: DatapathState): Applied {
  const full = compileAll(s, opts);
  assert.ok(full.digest);
  return appliedFromFull(s, full.parts, full.groups, opts, full.digest);
}

/** The element and chain changes between two from-scratch compiles (the truth). */
function scratchLines(from: DatapathState, to: DatapathState): string[] {
  return plan(compileAll(to, opts).table, asActual(compileAll(from, opts).table)).lines.sort();
}

describe("incremental caches", () => {
  test("a compiled chain cannot be changed in place (so its cached hash cannot go stale)", () => {
    const { table } = compileAll(state([ep(1, 80)]), opts);
    const c = table.chains.find((x) => x.name === "e1_in") as NftChain;
    const before = chainHash(c);
    assert.throws(() => c.rules.push("accept"), TypeError);
    assert.throws(() => {
      (c.rules as string[])[0] = "drop";
    }, TypeError);
    assert.equal(chainHash(c), before);
  });

  test("a chain that is not frozen is hashed from its content every time", () => {
    const c: NftChain = { name: "x", rules: ["accept"] };
    const h1 = chainHash(c);
    const w1 = chainRulesWithHash(c);
    c.rules.push("drop");
    assert.notEqual(chainHash(c), h1);
    assert.notDeepEqual(chainRulesWithHash(c), w1);
    assert.equal(chainHash({ name: "y", rules: ["accept"] }), h1, "same content, same hash");
  });

  test("the global part is planned again when its inputs change, even in place (same array)", () => {
    const eps = [ep(1, 80), ep(2, 81)];
    const s = state(eps);
    const applied = start(s);
    const before = structuredClone({ ipcache: s.ipcache });
    // Only endpoints unchanged: nothing at all to do (the global part is not planned).
    const none = planIncremental(applied, { ...s }, opts);
    assert.ok(none);
    assert.equal(none.plan.ops, 0);
    none.commit();
    // The ipcache array changed in place: the global part must not come from the cache.
    s.ipcache.push({ prefix: "172.16.0.0/12", identity: 16777218 });
    const p = planIncremental(applied, s, opts);
    assert.ok(p);
    assert.ok(p.plan.ops > 0, "the new prefix is planned");
    assert.deepEqual(
      p.plan.lines.sort(),
      scratchLines({ ...s, ipcache: before.ipcache }, s),
      "the same change as between two from-scratch compiles",
    );
    p.commit();
    // The host identity and the proxy are inputs of the global part too.
    const host = planIncremental(applied, { ...s, hostIdentity: 7 }, opts);
    assert.ok(host);
    assert.deepEqual(host.plan.lines.sort(), scratchLines(s, { ...s, hostIdentity: 7 }));
  });

  test("only the changed endpoint is compiled; a changed one is checked against the unchanged ones", () => {
    const eps = [ep(1, 80), ep(2, 81), ep(3, 82)];
    const s = state(eps);
    const applied = start(s);
    // ep 2 moves its port: a new object; 1 and 3 are the same objects.
    const next = state([eps[0] as DatapathEndpoint, ep(2, 90), eps[2] as DatapathEndpoint]);
    const p = planIncremental(applied, next, opts);
    assert.ok(p);
    assert.deepEqual(p.plan.lines.sort(), scratchLines(s, next));
    assert.ok(p.elementOps, "element changes only");
    p.commit();
    // A changed endpoint taking an unchanged one's interface is refused, naming it.
    const clash = state([
      eps[0] as DatapathEndpoint,
      { ...ep(2, 90), hostIfname: "veth1" },
      eps[2] as DatapathEndpoint,
    ]);
    assert.throws(
      () => planIncremental(applied, clash, opts),
      (e: Error & { code?: string }) =>
        e.code === "DATAPATH_STATE_INVALID" && /endpoints\[1\]\.hostIfname/.test(e.message),
    );
    // An id used twice, likewise.
    const twice = state([eps[0] as DatapathEndpoint, ep(2, 90), { ...ep(1, 99), hostIfname: "veth9" }]);
    assert.throws(() => planIncremental(applied, twice, opts), /endpoint id 1 is used twice/);
    // A bad address on a changed endpoint is refused as compile() refuses it.
    const bad = state([
      eps[0] as DatapathEndpoint,
      { ...ep(2, 90), ipv4: "10.1.0.300" },
      eps[2] as DatapathEndpoint,
    ]);
    assert.throws(() => planIncremental(applied, bad, opts), /endpoints\[1\]\.ipv4/);
  });

  test("a rule text change recompiles the policy groups whose comments use it, though the endpoints are the same objects", () => {
    const eps = [ep(1, 80), ep(2, 81)];
    const s = state(eps);
    const applied = start(s);
    const next = { ...s, rules: [{ id: 1, text: "default/r1 renamed" }] };
    const p = planIncremental(applied, next, opts);
    assert.ok(p);
    assert.deepEqual(p.plan.lines.sort(), scratchLines(s, next));
    assert.ok(p.plan.lines.some((l) => l.startsWith("~ chain g1_in_a1")));
  });

  test("the stamp after incremental changes is the digest of a from-scratch compile", () => {
    const eps = [ep(1, 80), ep(2, 81)];
    const s = state(eps);
    const applied = start(s);
    const steps: DatapathState[] = [
      state([eps[0] as DatapathEndpoint, ep(2, 91)]),
      { ...state([eps[0] as DatapathEndpoint, ep(2, 91)]), hostIdentity: 5 },
      state([ep(3, 70)]),
    ];
    for (const next of steps) {
      const p = planIncremental(applied, next, opts);
      assert.ok(p);
      p.commit();
      assert.equal(applied.digest.total, compileAll(next, opts).digest?.total);
    }
  });

  test("compiled policy and dispatch elements cannot be changed in place (so their cached keys cannot go stale)", () => {
    const { groups, parts } = compileAll(state([ep(1, 80)]), opts);
    const part = groups.get("g1_in");
    const own = parts.get(1);
    assert.ok(part && own);
    const m = part.maps.find((x) => x.name === "g1_in_id") as NftMap;
    const e = m.elements[0] as NftElement;
    const canon = elementCanon(e);
    const bytes = Buffer.from(encodeElement(m, e, true)?.key ?? []);
    assert.throws(() => {
      (e as { value: string }).value = "accept";
    }, TypeError);
    assert.throws(() => {
      (e.key[2] as { lo: bigint }).lo = 99n;
    }, TypeError);
    assert.throws(() => (e.key as unknown[]).push(1), TypeError);
    assert.throws(() => {
      (own.dispatch.ingress4?.key[0] as { lo: bigint }).lo = 1n;
    }, TypeError);
    assert.equal(elementCanon(e), canon);
    assert.deepEqual(Buffer.from(encodeElement(m, e, true)?.key ?? []), bytes);
  });

  test("an element that is not frozen is keyed and encoded from its content every time", () => {
    const m: NftMap = { name: "h", fields: ["ipv4"], valueType: "mark", interval: false, elements: [] };
    const e = { key: [{ lo: 0x0a000001n, hi: 0x0a000001n }], value: "5" };
    const c1 = elementCanon(e);
    const k1 = Buffer.from(encodeElement(m, e, false)?.key ?? []);
    (e.key[0] as { lo: bigint; hi: bigint }).lo = 0x0a000002n;
    (e.key[0] as { lo: bigint; hi: bigint }).hi = 0x0a000002n;
    assert.notEqual(elementCanon(e), c1);
    assert.notDeepEqual(Buffer.from(encodeElement(m, e, false)?.key ?? []), k1);
    assert.equal(encodeElement(m, e, false)?.value, 5);
  });

  test("a frozen element's key bytes are per map shape: the same element in another map is encoded for it", () => {
    const e = frozenElement({ key: [{ lo: 7n, hi: 7n }], value: "1" });
    const mark: NftMap = { name: "a", fields: ["mark"], valueType: "mark", interval: false, elements: [] };
    const v4: NftMap = { name: "b", fields: ["ipv4"], valueType: "mark", interval: false, elements: [] };
    const a = Buffer.from(encodeElement(mark, e, false)?.key ?? []);
    const b = Buffer.from(encodeElement(v4, e, false)?.key ?? []);
    assert.deepEqual(a, Buffer.from([7, 0, 0, 0]), "one-field mark: host order");
    assert.deepEqual(b, Buffer.from([0, 0, 0, 7]), "address: network order");
    assert.deepEqual(Buffer.from(encodeElement(mark, e, false)?.key ?? []), a);
  });
});
