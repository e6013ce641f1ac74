import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MapState, type FlatSegment, type MapStateEntry } from "../../src/policy/mapstate.js";
import type { RuleOrigin } from "../../src/policy/types.js";

const o = (name: string, deny = false): RuleOrigin => ({
  policy: { kind: "CiliumNetworkPolicy", name, namespace: "default" },
  path: "spec.ingress[0]",
  deny,
});
const http = {
  parser: "http" as const,
  http: [{ method: "GET", headers: [] }],
  dns: [],
  kafka: [],
  serverNames: [],
};
const dns = { parser: "dns" as const, http: [], dns: [{ matchPattern: "*" }], kafka: [], serverNames: [] };
type E = Omit<MapStateEntry, "derivedFrom"> & { name?: string };
const entry = (e: E): MapStateEntry => ({ ...e, derivedFrom: [o(e.name ?? "p", e.deny)] });
const ms = (...es: E[]) => {
  const m = new MapState();
  for (const e of es) m.add(entry(e));
  return m;
};
const L3 = { proto: 0, lo: 0, hi: 65535 };
const TCP80 = { proto: 6, lo: 80, hi: 80 };

describe("MapState lookup", () => {
  const cases: { name: string; m: MapState; q: [number, number, number]; want: string }[] = [
    { name: "no entry gives none", m: ms(), q: [300, 6, 80], want: "none" },
    {
      name: "L3-only allow covers every protocol and port",
      m: ms({ identity: 300, ...L3, deny: false }),
      q: [300, 17, 53],
      want: "allow",
    },
    {
      name: "L3-only allow covers ICMP",
      m: ms({ identity: 300, ...L3, deny: false }),
      q: [300, 1, 8],
      want: "allow",
    },
    {
      name: "port allow does not cover another port",
      m: ms({ identity: 300, ...TCP80, deny: false }),
      q: [300, 6, 81],
      want: "none",
    },
    {
      name: "port allow does not cover another protocol",
      m: ms({ identity: 300, ...TCP80, deny: false }),
      q: [300, 17, 80],
      want: "none",
    },
    {
      name: "allow for one identity does not cover another",
      m: ms({ identity: 300, ...L3, deny: false }),
      q: [301, 6, 80],
      want: "none",
    },
    {
      name: "wildcard identity covers every identity",
      m: ms({ identity: 0, ...TCP80, deny: false }),
      q: [301, 6, 80],
      want: "allow",
    },
    {
      name: "range covers its ends",
      m: ms({ identity: 300, proto: 6, lo: 1000, hi: 2000, deny: false }),
      q: [300, 6, 2000],
      want: "allow",
    },
    {
      name: "range does not cover past its end",
      m: ms({ identity: 300, proto: 6, lo: 1000, hi: 2000, deny: false }),
      q: [300, 6, 2001],
      want: "none",
    },
    {
      name: "L3 deny beats L4 allow",
      m: ms({ identity: 300, ...TCP80, deny: false }, { identity: 300, ...L3, deny: true }),
      q: [300, 6, 80],
      want: "deny",
    },
    {
      name: "L4 deny beats L3 allow on its port",
      m: ms({ identity: 300, ...L3, deny: false }, { identity: 300, ...TCP80, deny: true }),
      q: [300, 6, 80],
      want: "deny",
    },
    {
      name: "L4 deny leaves other ports of an L3 allow",
      m: ms({ identity: 300, ...L3, deny: false }, { identity: 300, ...TCP80, deny: true }),
      q: [300, 6, 443],
      want: "allow",
    },
    {
      name: "wildcard deny beats specific allow",
      m: ms({ identity: 300, ...TCP80, deny: false }, { identity: 0, ...TCP80, deny: true }),
      q: [300, 6, 80],
      want: "deny",
    },
    {
      name: "specific deny beats wildcard allow",
      m: ms({ identity: 0, ...L3, deny: false }, { identity: 300, ...L3, deny: true }),
      q: [300, 6, 80],
      want: "deny",
    },
    {
      name: "specific deny leaves other identities under a wildcard allow",
      m: ms({ identity: 0, ...L3, deny: false }, { identity: 300, ...L3, deny: true }),
      q: [301, 6, 80],
      want: "allow",
    },
  ];
  for (const c of cases) test(c.name, () => assert.equal(c.m.lookup(...c.q).verdict, c.want));

  test("an L7 entry redirects to the proxy", () => {
    const r = ms({ identity: 300, ...TCP80, deny: false, l7: http }).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7 && !r.l7.allowAll);
  });
  test("an L4 allow on the same port shadows the L7 rules (allow all, still proxied)", () => {
    const r = ms(
      { identity: 300, ...TCP80, deny: false, l7: http },
      { identity: 300, ...TCP80, deny: false },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7?.allowAll === true);
  });
  test("a wildcard-peer L4 allow on the same port shadows a peer's L7 rules", () => {
    const r = ms(
      { identity: 300, ...TCP80, deny: false, l7: http },
      { identity: 0, ...TCP80, deny: false },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7?.allowAll === true);
  });
  test("an L3-only allow does not shadow L7 rules (attack case: broad allow)", () => {
    const r = ms(
      { identity: 300, ...TCP80, deny: false, l7: http },
      { identity: 300, ...L3, deny: false },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7?.allowAll === false);
  });
  test("a port range allow does not shadow L7 rules on a port inside it", () => {
    const r = ms(
      { identity: 300, ...TCP80, deny: false, l7: http },
      { identity: 300, proto: 6, lo: 1, hi: 1000, deny: false },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7?.allowAll === false);
  });
  test("wildcard-peer L7 rules apply to every peer on that port", () => {
    const r = ms(
      { identity: 0, ...TCP80, deny: false, l7: http },
      { identity: 300, ...L3, deny: false },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7 !== undefined && r.l7.allowAll === false);
  });
  test("two parsers on one port for one peer is a conflict (fail closed)", () => {
    const r = ms(
      { identity: 300, ...TCP80, deny: false, l7: http },
      { identity: 0, ...TCP80, deny: false, l7: dns },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.l7?.conflict === true);
  });
  test("auth is required if any matching allow requires it", () => {
    const r = ms(
      { identity: 300, ...L3, deny: false },
      { identity: 300, ...TCP80, deny: false, auth: "required" },
    ).lookup(300, 6, 80);
    assert.ok(r.verdict === "allow" && r.auth === "required");
  });
  test("deny entries name the deny rule", () => {
    const r = ms(
      { identity: 300, ...L3, deny: false, name: "allow" },
      { identity: 300, ...L3, deny: true, name: "nope" },
    ).lookup(300, 6, 1);
    assert.ok(r.verdict === "deny");
    assert.deepEqual(
      r.entries.map((e) => e.derivedFrom[0]?.policy.name),
      ["nope"],
    );
  });
});

// The kernel looks up a specific identity's segments first, then identity 0's.
function flatLookup(segs: readonly FlatSegment[], id: number, proto: number, port: number): string {
  const hit = (ident: number) =>
    segs.find(
      (s) => s.identity === ident && (s.proto === 0 || s.proto === proto) && s.lo <= port && port <= s.hi,
    );
  const s = hit(id) ?? (id !== 0 ? hit(0) : undefined);
  return s ? s.verdict : "none";
}

describe("MapState flatten", () => {
  test("segments of one identity never overlap", () => {
    const m = ms(
      { identity: 300, ...L3, deny: false },
      { identity: 300, ...TCP80, deny: true },
      { identity: 0, proto: 6, lo: 70, hi: 90, deny: false },
    );
    const segs = m.flatten();
    // A protocol-0 segment stands for the protocols not listed (the kernel compiler cuts it around them).
    for (const a of segs)
      for (const b of segs)
        if (a !== b && a.identity === b.identity && a.proto === b.proto)
          assert.ok(a.hi < b.lo || b.hi < a.lo, `overlap ${JSON.stringify(a)} ${JSON.stringify(b)}`);
    for (const id of [0, 300])
      assert.ok(
        segs.filter((s) => s.identity === id && s.proto === 0).length <= 1,
        `one protocol-0 segment for ${id}`,
      );
  });
  test("f7 an L3 allow with a TCP port deny still allows the other protocols (GRE) through a protocol-0 segment", () => {
    const m = ms({ identity: 300, ...L3, deny: false }, { identity: 300, ...TCP80, deny: true });
    const segs = m.flatten().map((s) => [s.identity, s.proto, s.lo, s.hi, s.verdict]);
    assert.deepEqual(
      segs.filter((s) => s[1] === 0),
      [[300, 0, 0, 65535, "allow"]],
    );
    assert.ok(segs.some((s) => s[1] === 6 && s[2] === 80 && s[3] === 80 && s[4] === "deny"));
    assert.equal(m.lookup(300, 47, 0).verdict, "allow");
  });
  test("f7 a rule for an extended protocol (GRE, 47) gets its own segment next to the port protocols", () => {
    const m = ms({ identity: 300, proto: 47, lo: 0, hi: 65535, deny: false });
    assert.deepEqual(
      m.flatten().map((s) => [s.identity, s.proto, s.lo, s.hi, s.verdict]),
      [[300, 47, 0, 65535, "allow"]],
    );
  });
  test("a uniform identity collapses to one protocol-0 segment", () => {
    const segs = ms({ identity: 300, ...L3, deny: false }).flatten();
    assert.deepEqual(
      segs.map((s) => [s.identity, s.proto, s.lo, s.hi, s.verdict]),
      [[300, 0, 0, 65535, "allow"]],
    );
  });
  test("L7 ports stay separate segments marked redirect", () => {
    const segs = ms(
      { identity: 300, proto: 6, lo: 1, hi: 1000, deny: false },
      { identity: 300, ...TCP80, deny: false, l7: http },
    ).flatten();
    const tcp = segs.filter((s) => s.proto === 6).map((s) => [s.lo, s.hi, s.redirect]);
    assert.deepEqual(tcp, [
      [1, 79, false],
      [80, 80, true],
      [81, 1000, false],
    ]);
  });
  test("property: specific-then-wildcard lookup of flattened segments equals MapState lookup", () => {
    const ids = [0, 300, 301];
    const protos = [0, 1, 6, 17, 58, 132];
    const arbEntry = fc.record({
      identity: fc.constantFrom(...ids),
      proto: fc.constantFrom(...protos),
      lo: fc.integer({ min: 0, max: 40 }),
      len: fc.integer({ min: 0, max: 20 }),
      deny: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(arbEntry, { maxLength: 8 }),
        fc.constantFrom(300, 301, 302),
        fc.constantFrom(1, 6, 17, 58, 132),
        fc.integer({ min: 0, max: 70 }),
        (raw, id, proto, port) => {
          const m = new MapState();
          for (const r of raw) {
            const [lo, hi] =
              r.proto === 0
                ? [0, 65535]
                : [r.lo, Math.min(r.lo + r.len, r.proto === 1 || r.proto === 58 ? 255 : 65535)];
            m.add(entry({ identity: r.identity, proto: r.proto, lo, hi, deny: r.deny }));
          }
          assert.equal(flatLookup(m.flatten(), id, proto, port), m.lookup(id, proto, port).verdict);
        },
      ),
      { numRuns: 2000, seed: 42 },
    );
  });
});
