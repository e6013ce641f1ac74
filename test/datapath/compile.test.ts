/**
 * The nftables compiler, pure parts: prefix flattening, segment splitting,
 * the compiled table, drop-log prefixes, the planner against canned readback.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { compile, logPrefix, parseLogPrefix } from "../../src/datapath/compile.js";
import { flattenIpcache } from "../../src/ipcache/intervals.js";
import { elementText, renderTable, type NftMap } from "../../src/datapath/model.js";
import { plan } from "../../src/datapath/plan.js";
import { parseTable } from "../../src/datapath/readback.js";
import { compileSegments } from "../../src/datapath/segments.js";
import type { DatapathState, PolicySegment } from "../../src/datapath/types.js";

const seg = (
  identity: number,
  proto: number,
  lo: number,
  hi: number,
  action: "allow" | "deny" = "allow",
  ruleId = 1,
): PolicySegment => ({
  identity,
  proto,
  lo,
  hi,
  action,
  ruleId,
});
const verdict = (s: PolicySegment): string => (s.action === "allow" ? "return" : `goto d${s.ruleId}`);
const L4: NftMap = {
  name: "x",
  fields: ["mark", "proto", "port"],
  valueType: "verdict",
  interval: true,
  elements: [],
};
const L4ANY: NftMap = { ...L4, fields: ["proto", "port"] };
const text = (m: NftMap, els: NftMap["elements"]): string[] => els.map((e) => elementText(m, e));

describe("flattenIpcache", () => {
  const cases: {
    name: string;
    ipcache: { prefix: string; identity: number }[];
    v4: string[];
    v6?: string[];
  }[] = [
    {
      name: "nothing: every address is world",
      ipcache: [],
      v4: ["0-4294967295:2"],
      v6: ["0-340282366920938463463374607431768211455:2"],
    },
    {
      name: "a /32 inside a /8: longest prefix wins, the /8 is split around it",
      ipcache: [
        { prefix: "10.0.0.0/8", identity: 300 },
        { prefix: "10.0.0.5/32", identity: 400 },
      ],
      v4: [
        "0-167772159:2",
        "167772160-167772164:300",
        "167772165-167772165:400",
        "167772166-184549375:300",
        "184549376-4294967295:2",
      ],
    },
    {
      name: "the order of the input does not matter",
      ipcache: [
        { prefix: "10.0.0.5/32", identity: 400 },
        { prefix: "10.0.0.0/8", identity: 300 },
      ],
      v4: [
        "0-167772159:2",
        "167772160-167772164:300",
        "167772165-167772165:400",
        "167772166-184549375:300",
        "184549376-4294967295:2",
      ],
    },
    {
      name: "adjacent pieces with the same identity merge",
      ipcache: [
        { prefix: "10.0.0.0/25", identity: 300 },
        { prefix: "10.0.0.128/25", identity: 300 },
      ],
      v4: ["0-167772159:2", "167772160-167772415:300", "167772416-4294967295:2"],
    },
    {
      name: "the same prefix twice: the later entry wins",
      ipcache: [
        { prefix: "0.0.0.0/0", identity: 9 },
        { prefix: "0.0.0.0/0", identity: 16777300 },
      ],
      v4: ["0-4294967295:16777300"],
    },
    {
      name: "IPv6 prefixes go to their own family",
      ipcache: [{ prefix: "fd00::/127", identity: 500 }],
      v4: ["0-4294967295:2"],
      v6: [
        "0-336294682933583715844663186250927177727:2",
        "336294682933583715844663186250927177728-336294682933583715844663186250927177729:500",
        "336294682933583715844663186250927177730-340282366920938463463374607431768211455:2",
      ],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { v4, v6 } = flattenIpcache(c.ipcache, 2);
      assert.deepEqual(
        v4.map((i) => `${i.lo}-${i.hi}:${i.identity}`),
        c.v4,
      );
      if (c.v6)
        assert.deepEqual(
          v6.map((i) => `${i.lo}-${i.hi}:${i.identity}`),
          c.v6,
        );
    });
  }
  test("a malformed prefix is an error naming its index", () => {
    assert.throws(() => flattenIpcache([{ prefix: "10.0.0.0/33", identity: 1 }], 2), {
      code: "DATAPATH_STATE_INVALID",
      message: 'Cannot compile the ipcache: "10.0.0.0/33" is not a prefix',
    });
  });
});

describe("compileSegments", () => {
  test("specific identities go to the id maps, identity 0 to the any maps, ICMP to the type maps", () => {
    const el = compileSegments(
      [seg(300, 6, 80, 80), seg(0, 17, 53, 53), seg(300, 1, 8, 8), seg(0, 58, 128, 129, "deny", 4)],
      verdict,
      "t",
    );
    assert.deepEqual(text(L4, el.id), ["300 . 6 . 80 : return"]);
    assert.deepEqual(text(L4, el.idi), ["300 . 1 . 8 : return"]);
    assert.deepEqual(text(L4ANY, el.any), ["17 . 53 : return"]);
    assert.deepEqual(text(L4ANY, el.anyi), ["58 . 128-129 : goto d4"]);
  });
  test("a single port goes to the exact-match (hash) map, a port range or a gap to the interval map", () => {
    const el = compileSegments(
      [
        seg(300, 6, 5432, 5432),
        seg(300, 6, 8000, 8080, "deny", 2),
        seg(0, 17, 53, 53),
        seg(0, 6, 1, 1023, "deny", 3),
        seg(301, 0, 0, 0, "allow", 4),
        seg(301, 6, 22, 22, "deny", 5),
        seg(301, 6, 24, 24, "deny", 5),
      ],
      verdict,
      "t",
    );
    assert.deepEqual(text(L4, el.id), [
      "300 . 6 . 5432 : return",
      "301 . 6 . 22 : goto d5",
      "301 . 6 . 24 : goto d5",
      // The proto-0 segment's gap between 22 and 24 is one port: exact too (it overlaps nothing).
      "301 . 6 . 23 : return",
    ]);
    assert.deepEqual(text(L4, el.idr), [
      "300 . 6 . 8000-8080 : goto d2",
      "301 . 6 . 0-21 : return",
      "301 . 6 . 25-65535 : return",
      "301 . 0 . 0-65535 : return",
      "301 . 2-5 . 0-65535 : return",
      "301 . 7-57 . 0-65535 : return",
      "301 . 59-255 . 0-65535 : return",
    ]);
    assert.deepEqual(text(L4ANY, el.any), ["17 . 53 : return"]);
    assert.deepEqual(text(L4ANY, el.anyr), ["6 . 1-1023 : goto d3"]);
  });
  test("directions sharing one segment array share their element keys; an array changed in place is laid out again", () => {
    const segs = [seg(300, 6, 5432, 5432), seg(0, 6, 8000, 8080, "deny", 2)];
    const a = compileSegments(segs, verdict, "a");
    const b = compileSegments(segs, (s) => `goto other${s.ruleId}`, "b");
    assert.equal(a.id[0]?.key, b.id[0]?.key, "one key array for both");
    assert.deepEqual(text(L4, b.id), ["300 . 6 . 5432 : goto other1"]);
    assert.deepEqual(text(L4ANY, b.anyr), ["6 . 8000-8080 : goto other2"]);
    (segs[0] as PolicySegment).lo = 5433;
    (segs[0] as PolicySegment).hi = 5433;
    assert.deepEqual(text(L4, compileSegments(segs, verdict, "a").id), ["300 . 6 . 5433 : return"]);
    segs.push(seg(300, 6, 5433, 5433));
    assert.throws(
      () => compileSegments(segs, verdict, "c"),
      /Cannot compile c: identity 300 proto 6 has overlapping/,
    );
  });
  test("a proto-0 segment covers every protocol, port and ICMP type", () => {
    const el = compileSegments([seg(300, 0, 0, 0, "deny", 9)], verdict, "t");
    assert.deepEqual(text(L4, el.id), []);
    assert.deepEqual(text(L4, el.idr), [
      "300 . 0 . 0-65535 : goto d9",
      "300 . 2-57 . 0-65535 : goto d9",
      "300 . 59-255 . 0-65535 : goto d9",
    ]);
    assert.deepEqual(text(L4, el.idi), ["300 . 1 . 0-255 : goto d9", "300 . 58 . 0-255 : goto d9"]);
  });
  test("a proto-0 segment is cut around the same identity's port segments (specific protocol wins)", () => {
    const el = compileSegments(
      [seg(300, 0, 0, 0, "allow", 2), seg(300, 6, 80, 90, "deny", 3), seg(300, 1, 0, 0, "deny", 3)],
      verdict,
      "t",
    );
    assert.deepEqual(text(L4, el.id), []);
    assert.deepEqual(text(L4, el.idr), [
      "300 . 6 . 80-90 : goto d3",
      "300 . 6 . 0-79 : return",
      "300 . 6 . 91-65535 : return",
      "300 . 0 . 0-65535 : return",
      "300 . 2-5 . 0-65535 : return",
      "300 . 7-57 . 0-65535 : return",
      "300 . 59-255 . 0-65535 : return",
    ]);
    assert.deepEqual(text(L4, el.idi), [
      "300 . 1 . 0 : goto d3",
      "300 . 1 . 1-255 : return",
      "300 . 58 . 0-255 : return",
    ]);
  });
  const bad: { name: string; segs: PolicySegment[]; message: string }[] = [
    {
      name: "overlapping port ranges of one identity",
      segs: [seg(300, 6, 80, 90), seg(300, 6, 85, 100)],
      message: "Cannot compile t: identity 300 proto 6 has overlapping port ranges at 85-100",
    },
    {
      name: "two proto-0 segments of one identity",
      segs: [seg(300, 0, 0, 0), seg(300, 0, 0, 0)],
      message: "Cannot compile t: identity 300 has 2 proto-0 segments, which overlap",
    },
    {
      name: "an ICMP type above 255",
      segs: [seg(300, 1, 0, 300)],
      message: "Cannot compile t.segments[0]: port range 0-300 is not inside 0-255",
    },
    {
      name: "an identity above 25 bits",
      segs: [seg(1 << 25, 6, 1, 1)],
      message: "Cannot compile t.segments[0]: identity 33554432 is not in 0..33554431",
    },
  ];
  for (const b of bad) {
    test(`rejects ${b.name}`, () => {
      assert.throws(() => compileSegments(b.segs, verdict, "t"), {
        code: "DATAPATH_STATE_INVALID",
        message: b.message,
      });
    });
  }
});

function smallState(): DatapathState {
  return {
    hostIdentity: 1,
    rules: [{ id: 7, text: 'default/deny "db" spec.ingressDeny[0]' }],
    ipcache: [{ prefix: "10.200.0.12/32", identity: 300 }],
    endpoints: [
      {
        id: 12,
        name: "db",
        hostIfname: "mbrh12",
        ipv4: "10.200.0.12",
        identity: 300,
        ingress: { enforced: true, segments: [seg(301, 6, 5432, 5432), seg(0, 6, 22, 22, "deny", 7)] },
        egress: { enforced: false, segments: [] },
      },
    ],
  };
}

describe("compile", () => {
  const t = compile(smallState(), { table: "mt", logGroup: 5 });
  const map = (name: string): string[] => {
    const m = t.maps.find((x) => x.name === name);
    assert.ok(m, `map ${name}`);
    return m.elements.map((e) => elementText(m, e));
  };
  const chain = (name: string): string[] => t.chains.find((c) => c.name === name)?.rules ?? [];

  test("the ipcache maps cover every address", () => {
    assert.deepEqual(map("ipcache4"), [
      "0.0.0.0-10.200.0.11 : 2",
      "10.200.0.12 : 300",
      "10.200.0.13-255.255.255.255 : 2",
    ]);
    assert.deepEqual(map("ipcache6"), ["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff : 2"]);
  });
  test("segments land in the endpoint's policy group's maps with allow = goto its verdict-log chain (then return) and deny = goto its drop-log chain", () => {
    assert.deepEqual(map("g12_in_id"), ["301 . 6 . 5432 : goto g12_in_a1"]);
    assert.deepEqual(map("g12_in_any"), ["6 . 22 : goto g12_in_r7"]);
    // A map with no elements does not exist, nor does its lookup.
    assert.equal(
      t.maps.find((m) => m.name === "g12_out_id"),
      undefined,
    );
    // The group's logs name the group; the endpoint is the packet's address (abi/log-prefix.ts).
    assert.deepEqual(chain("g12_in_r7"), [
      `log group 5 prefix "mbr:d:g12:in:r7" drop comment "default/deny 'db' spec.ingressDeny[0]"`,
    ]);
  });
  test("the interface dispatch maps jump to the endpoint chains", () => {
    assert.deepEqual(map("egress_ep"), ['"mbrh12" : jump e12_out']);
    assert.deepEqual(map("ingress_ep"), ['"mbrh12" : jump e12_in']);
  });
  test("the established fast path: an endpoint's interface and its own source address, accepted", () => {
    assert.deepEqual(map("egress_est4"), ['"mbrh12" . 10.200.0.12 : accept']);
    assert.deepEqual(map("egress_est6"), []);
  });
  test("the ingress chain: conntrack first, then goto its group: specific before wildcard lookups, default deny logged last", () => {
    assert.deepEqual(chain("e12_in"), [
      "ct state established,related accept",
      'ct state invalid log group 5 prefix "mbr:d:e12:in:inv" drop',
      "goto g12_in",
    ]);
    assert.deepEqual(chain("g12_in"), [
      "meta l4proto != 1 meta l4proto != 58 meta mark & 0x01ffffff . meta l4proto . th dport vmap @g12_in_id",
      "meta l4proto != 1 meta l4proto != 58 meta l4proto . th dport vmap @g12_in_any",
      'log group 5 prefix "mbr:d:g12:in:def" drop',
    ]);
  });
  test("the egress chain checks the source address first; no IPv6 address means no IPv6 at all", () => {
    assert.deepEqual(chain("e12_out").slice(0, 3), [
      'ip saddr != 10.200.0.12 log group 5 prefix "mbr:d:e12:out:spoof" drop',
      'meta nfproto ipv6 log group 5 prefix "mbr:d:e12:out:spoof" drop',
      "ct state established,related accept",
    ]);
    assert.equal(
      chain("e12_out").length,
      4,
      "no segments, not enforced: no group, no lookups, no default drop",
    );
    assert.equal(
      t.chains.find((c) => c.name === "g12_out"),
      undefined,
    );
  });
  test("traffic from the node itself carries the host identity", () => {
    assert.deepEqual(chain("out_c").slice(1), ["meta mark set 1", "oifname vmap @ingress_ep"]);
  });
  test("with a Service, service connections skip the policy before DNAT and get the chains after it", () => {
    const none = new Set(t.chains.map((c) => c.name));
    assert.ok(!none.has("lb_pre_c") && !none.has("lb_out_c"), "no Service: no chain for service connections");
    const skip = "ct state new ct mark & 0x08000000 != 0 accept";
    assert.ok(!chain("pre_c").includes(skip) && !chain("out_c").includes(skip));
    const s = compile({ ...smallState(), services: true }, { table: "mt", logGroup: 5 });
    const rules = (name: string): string[] => s.chains.find((c) => c.name === name)?.rules ?? [];
    // Judged after its DNAT, on its backend (compile-lb-policy.ts); before the endpoint's dispatch.
    assert.deepEqual(rules("out_c").slice(1), [skip, "meta mark set 1", "oifname vmap @ingress_ep"]);
    assert.equal(rules("pre_c")[3], skip);
    assert.equal(rules("pre_c")[4], "iifname vmap @egress_ep");
    for (const name of ["lb_pre_c", "lb_out_c"]) {
      assert.deepEqual(rules(name).slice(0, 2), [
        "ct state != new accept",
        "ct mark & 0x08000000 == 0 accept",
      ]);
      assert.match(s.chains.find((c) => c.name === name)?.base ?? "", /priority -90;/);
    }
  });
  test("both ends are decided in prerouting; traffic to the node's own addresses is to host", () => {
    assert.deepEqual(chain("pre_c"), [
      // An endpoint's established packets from its own address: one lookup, accepted (dispatch.ts).
      "meta nfproto ipv4 ct state established,related iifname . ip saddr vmap @egress_est4",
      "meta nfproto ipv6 ct state established,related iifname . ip6 saddr vmap @egress_est6",
      "icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 137, 143 } accept",
      "iifname vmap @egress_ep",
      // Established packets need no identity: no ipcache lookup for them.
      "ct state established,related accept",
      "meta mark set ip saddr map @ipcache4",
      "meta mark set ip6 saddr map @ipcache6",
      "meta mark set ip saddr map @ipcache4_host",
      "meta mark set ip6 saddr map @ipcache6_host",
      "ip daddr vmap @ingress_ep4",
      "ip6 daddr vmap @ingress_ep6",
    ]);
    // A new connection's egress gets the destination's identity from the shared chain.
    assert.deepEqual(chain("mark_dst"), [
      "meta mark set ip daddr map @ipcache4",
      "meta mark set ip6 daddr map @ipcache6",
      // Exact addresses override prefixes: a missing key leaves the mark as the prefix map set it.
      "meta mark set ip daddr map @ipcache4_host",
      "meta mark set ip6 daddr map @ipcache6_host",
      "fib daddr type local meta mark set 1",
    ]);
    assert.equal(
      t.chains.find((c) => c.name === "nat_c"),
      undefined,
      "no proxy, no DNAT chain",
    );
  });
  test("renderTable shows one table with the given name", () => {
    assert.match(
      renderTable(t),
      /^table inet mt \{\n\tmap ipcache4 \{\n\t\ttype ipv4_addr : mark; flags interval;\n/,
    );
  });
  const badStates: { name: string; change: (s: DatapathState) => void; message: string }[] = [
    {
      name: "a duplicate endpoint id",
      change: (s) => s.endpoints.push({ ...s.endpoints[0]!, hostIfname: "other" }),
      message: "Cannot compile endpoints[1].id: endpoint id 12 is used twice",
    },
    {
      name: "an interface name longer than 15",
      change: (s) => (s.endpoints[0]!.hostIfname = "a-very-long-ifname"),
      message:
        'Cannot compile endpoints[0].hostIfname: "a-very-long-ifname" is not an interface name (1-15 of [A-Za-z0-9_.-])',
    },
    {
      name: "an IPv6 address in ipv4",
      change: (s) => (s.endpoints[0]!.ipv4 = "fd00::1"),
      message: 'Cannot compile endpoints[0].ipv4: "fd00::1" is not an IPv4 address',
    },
    {
      name: "an ipcache identity above 25 bits",
      change: (s) => (s.ipcache[0]!.identity = 2 ** 26),
      message: "Cannot compile ipcache[0].identity: identity 67108864 is not in 0..33554431",
    },
  ];
  for (const b of badStates) {
    test(`rejects ${b.name}`, () => {
      const s = smallState();
      b.change(s);
      assert.throws(() => compile(s), { code: "DATAPATH_STATE_INVALID", message: b.message });
    });
  }
});

describe("drop log prefixes", () => {
  const cases = [
    { prefix: logPrefix(12, "in", { kind: "rule", ruleId: 7 }), text: "mbr:d:e12:in:r7" },
    { prefix: logPrefix(3, "out", { kind: "default" }), text: "mbr:d:e3:out:def" },
    { prefix: logPrefix(3, "out", { kind: "spoof" }), text: "mbr:d:e3:out:spoof" },
    { prefix: logPrefix(0, "in", { kind: "invalid" }), text: "mbr:d:e0:in:inv" },
  ];
  for (const c of cases) {
    test(`${c.text} reads back to what wrote it`, () => {
      assert.equal(c.prefix, c.text);
      assert.equal(
        logPrefix(...(Object.values(parseLogPrefix(c.text) ?? {}) as Parameters<typeof logPrefix>)),
        c.text,
      );
    });
  }
  test("a foreign prefix is not ours", () => {
    assert.equal(parseLogPrefix("IN=eth0 OUT="), undefined);
    assert.equal(parseLogPrefix("mbr:d:e1:sideways:def"), undefined);
  });
});

describe("plan", () => {
  const t = compile(smallState(), { table: "mt" });
  test("from nothing: table, then chains, maps, elements, rules, in that order", () => {
    const p = plan(t, undefined);
    const verbs = p.script
      .trim()
      .split("\n")
      .map((l) => l.split(" ").slice(0, 2).join(" "));
    const firstOf = (v: string): number => verbs.indexOf(v);
    assert.equal(verbs[0], "add table");
    assert.ok(
      firstOf("add chain") < firstOf("add map") &&
        firstOf("add map") < firstOf("add element") &&
        firstOf("add element") < firstOf("add rule"),
    );
    assert.equal(verbs.filter((v) => v.startsWith("delete") || v.startsWith("flush")).length, 0);
  });
  test("a readback in prefix and range spellings equal to the desired state is zero ops", () => {
    const doc = {
      nftables: [
        { table: { family: "inet", name: "mt" } },
        {
          map: {
            name: "ipcache4",
            type: "ipv4_addr",
            map: "mark",
            flags: ["interval"],
            elem: [
              [{ range: ["0.0.0.0", "10.200.0.11"] }, 2],
              [{ prefix: { addr: "10.200.0.12", len: 32 } }, 300],
              [{ range: ["10.200.0.13", "255.255.255.255"] }, 2],
            ],
          },
        },
        {
          map: {
            name: "g12_in_id",
            type: ["mark", "inet_proto", "inet_service"],
            map: "verdict",
            elem: [[{ concat: [301, 6, 5432] }, { goto: { target: "g12_in_a1" } }]],
          },
        },
      ],
    };
    const actual = parseTable(doc);
    const p = plan({ ...t, maps: t.maps.filter((m) => actual.maps.has(m.name)), chains: [] }, actual);
    assert.deepEqual(p.lines, []);
    assert.equal(p.ops, 0);
  });
});

describe("compile: redirects to the L7 proxy", () => {
  const proxy = { ipv4: "10.200.0.1", ipv6: "fd00:200::1", l7Port: 15001, dnsPort: 15053, gid: 1337 };
  const withRedirects = (): DatapathState => {
    const s = smallState();
    const ep = s.endpoints[0]!;
    ep.ingress.segments.push({
      identity: 301,
      proto: 6,
      lo: 80,
      hi: 80,
      action: "redirect",
      proxy: "l7",
      ruleId: 3,
    });
    ep.egress.segments.push({
      identity: 0,
      proto: 17,
      lo: 53,
      hi: 53,
      action: "redirect",
      proxy: "dns",
      ruleId: 4,
    });
    return { ...s, proxy };
  };
  const t = compile(withRedirects(), { table: "mt", logGroup: 5 });
  const chain = (name: string): string[] | undefined => t.chains.find((c) => c.name === name)?.rules;
  const map = (name: string): string[] => {
    const m = t.maps.find((x) => x.name === name);
    assert.ok(m, `map ${name}`);
    return m.elements.map((e) => elementText(m, e));
  };
  test("a redirect segment logs the verdict, sets its proxy's ct mark bit and returns (the other end still decides)", () => {
    assert.ok(map("g12_in_id").includes("301 . 6 . 80 : goto g12_in_p3"));
    assert.ok(map("g12_out_any").includes("17 . 53 : goto g12_out_p4d"));
    assert.deepEqual(chain("g12_in_p3"), [
      'log group 5 prefix "mbr:p:g12:in:r3"',
      "ct mark set ct mark or 0x80000000",
    ]);
    assert.deepEqual(chain("g12_out_p4d"), [
      'log group 5 prefix "mbr:p:g12:out:r4"',
      "ct mark set ct mark or 0x40000000",
    ]);
  });
  test("marked connections are DNATed to the proxy's port in each family; a stray mark is dropped", () => {
    assert.deepEqual(chain("nat_c"), [
      "meta nfproto ipv4 ct mark & 0x40000000 != 0 meta l4proto { tcp, udp } dnat ip to 10.200.0.1:15053",
      "meta nfproto ipv4 ct mark & 0x80000000 != 0 meta l4proto tcp dnat ip to 10.200.0.1:15001",
      "meta nfproto ipv6 ct mark & 0x40000000 != 0 meta l4proto { tcp, udp } dnat ip6 to [fd00:200::1]:15053",
      "meta nfproto ipv6 ct mark & 0x80000000 != 0 meta l4proto tcp dnat ip6 to [fd00:200::1]:15001",
      "ct mark & 0xc0000000 != 0 drop",
    ]);
    assert.equal(
      t.chains.find((c) => c.name === "nat_c")?.base,
      "type nat hook prerouting priority dstnat; policy accept;",
    );
  });
  test("several proxy workers: new connections are spread round robin over the live workers' ports", () => {
    const w = compile(
      { ...withRedirects(), proxy: { ...proxy, l7Ports: [15001, 15002], dnsPorts: [15053, 15054] } },
      { table: "mt" },
    );
    const nat = w.chains.find((c) => c.name === "nat_c")?.rules ?? [];
    assert.deepEqual(nat.slice(0, 2), [
      "meta nfproto ipv4 ct mark & 0x40000000 != 0 meta l4proto { tcp, udp } dnat ip to 10.200.0.1:numgen inc mod 2 map { 0 : 15053, 1 : 15054 }",
      "meta nfproto ipv4 ct mark & 0x80000000 != 0 meta l4proto tcp dnat ip to 10.200.0.1:numgen inc mod 2 map { 0 : 15001, 1 : 15002 }",
    ]);
    // One live worker left (the other restarts): the plain rule to its port alone.
    const one = compile(
      { ...withRedirects(), proxy: { ...proxy, l7Ports: [15002], dnsPorts: [15054] } },
      { table: "mt" },
    );
    assert.ok(
      one.chains
        .find((c) => c.name === "nat_c")
        ?.rules.includes(
          "meta nfproto ipv4 ct mark & 0x80000000 != 0 meta l4proto tcp dnat ip to 10.200.0.1:15002",
        ),
    );
  });
  test("without an IPv6 listener, a redirected IPv6 connection is dropped, never passed unproxied", () => {
    const v4only = compile(
      { ...withRedirects(), proxy: { ipv4: proxy.ipv4, l7Port: 15001, dnsPort: 15053, gid: 1337 } },
      { table: "mt" },
    );
    const nat = v4only.chains.find((c) => c.name === "nat_c")?.rules ?? [];
    assert.ok(nat.includes("meta nfproto ipv6 ct mark & 0xc0000000 != 0 drop"), nat.join("\n"));
  });
  test("the proxy's own upstream connections (its group) leave without a second check, marked as the proxy's", () => {
    assert.deepEqual(chain("out_c")?.slice(1, 4), [
      "meta skgid 1337 ct state new ct mark set ct mark or 0x10000000",
      "meta skgid 1337 accept",
      "ct state new ct mark set ct mark or 0x20000000",
    ]);
    assert.deepEqual(chain("nat_out_c")?.slice(0, 1), ["meta skgid 1337 return"]);
    assert.deepEqual(
      chain("nat_out_c")?.slice(1),
      chain("nat_c"),
      "the node's own connections are DNATed alike",
    );
  });
  test("the log prefix of a redirect reads back as allowed and redirected", () => {
    assert.deepEqual(parseLogPrefix("mbr:p:e12:in:r3"), {
      endpointId: 12,
      direction: "in",
      reason: { kind: "rule", ruleId: 3 },
      allowed: true,
      redirected: true,
    });
  });
  const bad: { name: string; state: () => DatapathState; message: RegExp }[] = [
    {
      name: "a redirect without a proxy in the state",
      state: () => {
        const { proxy: _gone, ...rest } = withRedirects();
        return rest;
      },
      message: /a segment redirects to the proxy but the state names no proxy/,
    },
    {
      name: "a proxy port out of range",
      state: () => ({ ...withRedirects(), proxy: { ...proxy, l7Port: 70000 } }),
      message: /Cannot compile proxy\.l7Port: 70000 is not a port/,
    },
    {
      name: "a worker port out of range, naming its index",
      state: () => ({ ...withRedirects(), proxy: { ...proxy, l7Ports: [15001, 0] } }),
      message: /Cannot compile proxy\.l7Ports\[1\]: 0 is not a port/,
    },
    {
      name: "a worker port listed twice",
      state: () => ({ ...withRedirects(), proxy: { ...proxy, dnsPorts: [15053, 15053] } }),
      message: /Cannot compile proxy\.dnsPorts\[1\]: 15053 is listed twice/,
    },
    {
      name: "group 0 (root) as the proxy group",
      state: () => ({ ...withRedirects(), proxy: { ...proxy, gid: 0 } }),
      message: /Cannot compile proxy\.gid: 0 is not a group id above 0/,
    },
    {
      name: "a proxy address of the wrong family",
      state: () => ({ ...withRedirects(), proxy: { ...proxy, ipv4: "fd00::1" } }),
      message: /Cannot compile proxy\.ipv4: "fd00::1" is not an IPv4 address/,
    },
  ];
  for (const c of bad) test(`rejects ${c.name}`, () => assert.throws(() => compile(c.state()), c.message));
});
