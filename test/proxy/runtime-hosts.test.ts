/**
 * The proxy's host table without a process: address keys, full tables in
 * parts and deltas (HostMap), what the supervisor plans to send (planHosts),
 * and the strict shape checks of the hosts messages.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { HostTable } from "../../src/ipcache/hosts.js";
import { parseAddr } from "../../src/labels/cidr.js";
import { HostMap } from "../../src/proxy/runtime/host-map.js";
import { planHosts } from "../../src/proxy/runtime/hosts-sync.js";
import {
  HOSTS_CHUNK,
  hostKey,
  hostsRefusal,
  type HostsDelta,
  type HostsFull,
} from "../../src/proxy/runtime/hosts-wire.js";
import { toProxy } from "../../src/proxy/runtime/protocol.js";
import { PolicyTable } from "../../src/proxy/runtime/table.js";

const full = (to: number, part: number, parts: number, set: [string, number][]): HostsFull => {
  const m = toProxy({ type: "hosts-full", to, part, parts, set });
  assert.ok(m && m.type === "hosts-full");
  return m;
};
const delta = (from: number, to: number, set: [string, number][], del: string[] = []): HostsDelta => {
  const m = toProxy({ type: "hosts", from, to, set, del });
  assert.ok(m && m.type === "hosts");
  return m;
};

describe("hostKey: one key per address, whatever its spelling", () => {
  test("two addresses have the same key exactly when they are the same address (parseAddr)", () => {
    const addr = fc.oneof(fc.ipV4(), fc.ipV6());
    fc.assert(
      fc.property(addr, addr, (a, b) => {
        const [ka, kb] = [hostKey(a), hostKey(b)];
        const [pa, pb] = [parseAddr(a), parseAddr(b)];
        assert.ok(ka !== undefined && kb !== undefined && pa && pb, `${a} ${b}`);
        assert.equal(ka === kb, pa.family === pb.family && pa.value === pb.value);
        assert.equal(hostKey(a.toUpperCase()), ka);
      }),
      { numRuns: 2000 },
    );
  });
  const cases: [string, string | undefined][] = [
    ["10.0.0.1", "10.0.0.1"],
    ["fd00::7", "fd000000000000000000000000000007"],
    ["FD00:0:0::0007", "fd000000000000000000000000000007"],
    ["::ffff:10.0.0.1", "00000000000000000000ffff0a000001"],
    ["::", "0".repeat(32)],
    ["010.0.0.1", undefined],
    ["10.0.0.256", undefined],
    ["10.1", undefined],
    ["10.0.0.0/24", undefined],
    ["fe80::1%eth0", undefined],
    ["1:2:3:4:5:6:7:8:9", undefined],
    ["", undefined],
    ["a".repeat(46), undefined],
  ];
  for (const [s, want] of cases)
    test(`${JSON.stringify(s)} -> ${want ?? "refused"}`, () => assert.equal(hostKey(s), want));
});

describe("HostMap: a full table in parts, then deltas on top of the revision it holds", () => {
  test("parts in order are swapped in at the last one; a lookup never sees half a table", () => {
    const h = new HostMap();
    assert.equal(full(5, 0, 2, [["10.0.0.1", 300]]).part, 0);
    assert.equal(h.full(full(5, 0, 2, [["10.0.0.1", 300]])), undefined);
    assert.equal(h.get("10.0.0.1"), undefined, "not before the last part");
    assert.deepEqual(h.full(full(5, 1, 2, [["fd00::1", 301]])), { to: 5, ok: true });
    assert.deepEqual([h.revision, h.get("10.0.0.1"), h.get("fd00:0::1"), h.size], [5, 300, 301, 2]);
  });
  test("a part missing: the table is refused and the old one kept", () => {
    const h = new HostMap();
    h.full(full(1, 0, 1, [["10.0.0.1", 300]]));
    h.full(full(2, 0, 3, [["10.0.0.2", 301]]));
    assert.deepEqual(h.full(full(2, 2, 3, [["10.0.0.3", 302]])), { to: 2, ok: false });
    assert.deepEqual([h.revision, h.get("10.0.0.1"), h.get("10.0.0.2")], [1, 300, undefined]);
  });
  test("a malformed part is refused at once with its reason; its later parts get no second reply; the held table stays", () => {
    const h = new HostMap();
    h.full(full(1, 0, 1, [["10.0.0.1", 300]]));
    h.full(full(2, 0, 3, [["10.0.0.2", 301]]));
    assert.deepEqual(
      h.refuse("hosts-full", 2, 'part 1 of 3: set[0] address "x" is not a plain IPv4/IPv6 address'),
      {
        to: 2,
        ok: false,
        error: 'part 1 of 3: set[0] address "x" is not a plain IPv4/IPv6 address',
      },
    );
    assert.equal(h.full(full(2, 2, 3, [["10.0.0.3", 302]])), undefined, "answered already");
    assert.deepEqual(
      [h.revision, h.get("10.0.0.1"), h.get("10.0.0.2"), h.get("10.0.0.3")],
      [1, 300, undefined, undefined],
    );
    // The next table is taken as usual.
    h.full(full(3, 0, 1, [["10.0.0.4", 303]]));
    assert.deepEqual([h.revision, h.get("10.0.0.4"), h.get("10.0.0.1")], [3, 303, undefined]);
  });
  test("a malformed last (or only) part is refused too: the agent is never left waiting", () => {
    const h = new HostMap();
    const bad = { type: "hosts-full", to: 7, part: 0, parts: 1, set: [["10.0.0.256", 300]] };
    assert.equal(toProxy(bad), undefined);
    const why = hostsRefusal(bad);
    assert.deepEqual(why, {
      type: "hosts-full",
      to: 7,
      why: 'part 0 of 1: set[0] address "10.0.0.256" is not a plain IPv4/IPv6 address',
    });
    assert.deepEqual(h.refuse(why.type, why.to, why.why), { to: 7, ok: false, error: why.why });
    assert.equal(h.revision, undefined);
  });
  test("a delta applies on the revision it came from, and only there", () => {
    const h = new HostMap();
    assert.deepEqual(h.delta(delta(0, 1, [["10.0.0.1", 1]])), { to: 1, ok: false }, "no table yet");
    h.full(
      full(3, 0, 1, [
        ["10.0.0.1", 300],
        ["10.0.0.2", 301],
      ]),
    );
    assert.deepEqual(h.delta(delta(2, 4, [["10.0.0.1", 310]])), { to: 4, ok: false });
    assert.equal(h.get("10.0.0.1"), 300, "a refused delta changes nothing");
    assert.deepEqual(h.delta(delta(3, 5, [["10.0.0.1", 310]], ["10.0.0.2"])), { to: 5, ok: true });
    assert.deepEqual([h.revision, h.get("10.0.0.1"), h.get("10.0.0.2")], [5, 310, undefined]);
  });
  test("PolicyTable: a local endpoint, then the host table, then the prefixes, then world", () => {
    const h = new HostMap();
    h.full(
      full(1, 0, 1, [
        ["10.0.0.5", 999],
        ["10.1.0.7", 300],
      ]),
    );
    const t = new PolicyTable(
      {
        version: 1,
        ipcache: [{ prefix: "10.1.0.0/16", identity: 16777300 }],
        endpoints: [{ name: "default/a", id: 1, identity: 400, ipv4: "10.0.0.5" }],
        l7: [],
      },
      h,
    );
    assert.deepEqual(
      ["10.0.0.5", "10.1.0.7", "::ffff:10.1.0.7", "10.1.0.8", "192.0.2.1"].map((a) => t.identityOf(a)),
      [400, 300, 300, 16777300, 2],
    );
  });
});

describe("planHosts: what a push sends", () => {
  test("nothing held: the whole table in parts of HOSTS_CHUNK; then a delta of what changed; then nothing", () => {
    const t = new HostTable();
    for (let i = 0; i < HOSTS_CHUNK + 1; i++) t.set(`10.2.${i >> 8}.${i & 255}`, 256);
    const p = planHosts(t, undefined);
    assert.deepEqual(
      [p.kind, p.entries, p.messages.map((m) => m.set.length)],
      ["full", HOSTS_CHUNK + 1, [HOSTS_CHUNK, 1]],
    );
    const held = { table: t, revision: p.to };
    t.set("10.3.0.1", 300);
    t.delete("10.2.0.0");
    const d = planHosts(t, held);
    assert.deepEqual(d.messages, [
      {
        type: "hosts",
        from: held.revision,
        to: held.revision + 2,
        set: [["10.3.0.1", 300]],
        del: ["10.2.0.0"],
      },
    ]);
    assert.equal(planHosts(t, { table: t, revision: t.revision }).kind, "none");
  });
  test("another table, a forced resend or more than HOSTS_CHUNK changes: the whole table", () => {
    const t = new HostTable();
    t.set("10.2.0.1", 256);
    const held = { table: t, revision: t.revision };
    t.set("10.2.0.2", 257);
    assert.equal(planHosts(t, held, true).kind, "full");
    assert.equal(planHosts(t, { table: new HostTable(), revision: 0 }).kind, "full");
    for (let i = 0; i <= HOSTS_CHUNK; i++) t.set(`10.3.${i >> 8}.${i & 255}`, 258);
    assert.equal(planHosts(t, held).kind, "full");
  });
});

describe("hosts messages are shape-checked and bounded", () => {
  const ok = { type: "hosts", from: 1, to: 2, set: [["10.0.0.1", 300]], del: ["fd00::1"] };
  const cases: { name: string; msg: unknown; ok: boolean }[] = [
    { name: "a delta", msg: ok, ok: true },
    { name: "a delta going back (to < from)", msg: { ...ok, from: 3 }, ok: false },
    { name: "a delta with a fractional revision", msg: { ...ok, to: 2.5 }, ok: false },
    { name: "a delta with a prefix for an address", msg: { ...ok, set: [["10.0.0.0/8", 300]] }, ok: false },
    { name: "a delta with an identity over 2^32-1", msg: { ...ok, set: [["10.0.0.1", 2 ** 32]] }, ok: false },
    { name: "a delta with a negative identity", msg: { ...ok, set: [["10.0.0.1", -1]] }, ok: false },
    { name: "a delta entry of three fields", msg: { ...ok, set: [["10.0.0.1", 300, 1]] }, ok: false },
    { name: "a delta deleting a number", msg: { ...ok, del: [1] }, ok: false },
    { name: "a delta without del", msg: { type: "hosts", from: 1, to: 2, set: [] }, ok: false },
    {
      name: `a delta of ${HOSTS_CHUNK + 1} entries`,
      msg: { ...ok, set: Array(HOSTS_CHUNK).fill(["10.0.0.1", 1]), del: ["10.0.0.2"] },
      ok: false,
    },
    { name: "a part", msg: { type: "hosts-full", to: 1, part: 0, parts: 1, set: [] }, ok: true },
    {
      name: "a part past the last",
      msg: { type: "hosts-full", to: 1, part: 1, parts: 1, set: [] },
      ok: false,
    },
    {
      name: "a table of 101 parts",
      msg: { type: "hosts-full", to: 1, part: 0, parts: 101, set: [] },
      ok: false,
    },
    {
      name: `a part of ${HOSTS_CHUNK + 1} entries`,
      msg: {
        type: "hosts-full",
        to: 1,
        part: 0,
        parts: 1,
        set: Array(HOSTS_CHUNK + 1).fill(["10.0.0.1", 1]),
      },
      ok: false,
    },
    { name: "a lookup", msg: { type: "identity-of", id: 1, address: "10.0.0.1" }, ok: true },
    {
      name: "a lookup of a long text",
      msg: { type: "identity-of", id: 1, address: "1".repeat(65) },
      ok: false,
    },
  ];
  for (const k of cases)
    test(`${k.ok ? "accepts" : "drops"} ${k.name}`, () => assert.equal(toProxy(k.msg) !== undefined, k.ok));
  const reasons: { msg: Record<string, unknown>; why: RegExp }[] = [
    { msg: { ...ok, from: 3 }, why: /^revisions from 3 to 2 are not a range$/ },
    {
      msg: { ...ok, set: [["10.0.0.0/8", 300]] },
      why: /^set\[0\] address "10\.0\.0\.0\/8" is not a plain IPv4\/IPv6 address$/,
    },
    {
      msg: {
        ...ok,
        set: [
          ["10.0.0.1", 1],
          ["10.0.0.2", 2 ** 32],
        ],
      },
      why: /^set\[1\] identity 4294967296 is not an identity/,
    },
    { msg: { ...ok, del: ["10.0.0.1", 1] }, why: /^del\[1\] address 1 is not a plain/ },
    { msg: { ...ok, set: [["a".repeat(500), 1]] }, why: /^set\[0\] address "a{64}" is not/ },
    {
      msg: { type: "hosts-full", to: 4, part: 2, parts: 3, set: [["10.0.0.1", 1, 9]] },
      why: /^part 2 of 3: set\[0\] is not an \[address, identity\] pair$/,
    },
    {
      msg: { type: "hosts-full", to: 4, part: 0, parts: 101, set: [] },
      why: /^part 0 of 101 is out of bounds/,
    },
  ];
  for (const r of reasons)
    test(`a refusal names what is wrong: ${String(r.why)}`, () => {
      assert.equal(toProxy(r.msg), undefined);
      const got = hostsRefusal(r.msg);
      assert.ok(got, "refused");
      assert.equal(got.to, r.msg.to);
      assert.match(got.why, r.why);
    });
  test("nothing to answer: a well-formed message, another type, or no readable revision", () => {
    for (const m of [ok, { type: "snapshot", to: 1 }, { ...ok, to: "2" }, null, "hosts"])
      assert.equal(hostsRefusal(m), undefined);
  });
  test("addresses arrive keyed: equal addresses are equal keys", () => {
    const m = toProxy({ type: "hosts", from: 1, to: 2, set: [["FD00::1", 5]], del: ["fd00:0::1"] });
    assert.ok(m && m.type === "hosts");
    assert.deepEqual([m.set[0]?.[0], m.del[0]], [hostKey("fd00::1"), hostKey("fd00::1")]);
  });
});
