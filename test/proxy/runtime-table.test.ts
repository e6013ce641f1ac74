/**
 * The proxy's policy table: who a redirected connection is between, whose
 * L7 rules apply (the client's egress, the server's ingress, or both), and
 * the IPC message shape checks.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { L7Spec } from "../../src/policy/mapstate.js";
import { fromProxy, MAX_L7_BATCH, toProxy } from "../../src/proxy/runtime/protocol.js";
import { PolicyTable, plainAddress, type ProxySnapshot } from "../../src/proxy/runtime/table.js";
import { lookupKey } from "../../src/proxy/types.js";

const http = (path: string): L7Spec => ({
  parser: "http",
  http: [{ path, headers: [] }],
  dns: [],
  kafka: [],
  serverNames: [],
});

const SNAP: ProxySnapshot = {
  version: 7,
  ipcache: [
    { prefix: "10.200.0.5/32", identity: 300 },
    { prefix: "10.200.0.6/32", identity: 301 },
    { prefix: "10.200.0.7/32", identity: 302 },
    { prefix: "198.51.100.0/24", identity: 16777217 },
  ],
  endpoints: [
    { name: "default/client", id: 1, identity: 300, ipv4: "10.200.0.5", ipv6: "fd00:200::5" },
    { name: "default/server", id: 2, identity: 301, ipv4: "10.200.0.6" },
    { name: "default/plain", id: 3, identity: 302, ipv4: "10.200.0.7" },
  ],
  l7: [
    // client egress: HTTP rules to the server on 80, and to any identity on 8080
    {
      endpoint: "default/client",
      direction: "egress",
      identity: 301,
      proto: 6,
      lo: 80,
      hi: 80,
      spec: http("/out"),
      allowAll: false,
    },
    {
      endpoint: "default/client",
      direction: "egress",
      identity: 0,
      proto: 6,
      lo: 8080,
      hi: 8080,
      spec: http("/any"),
      allowAll: false,
    },
    // server ingress: HTTP rules from any identity on 80
    {
      endpoint: "default/server",
      direction: "ingress",
      identity: 0,
      proto: 6,
      lo: 80,
      hi: 80,
      spec: http("/in"),
      allowAll: false,
    },
    // server ingress on 81: a specific identity shadowed by an L4 allow
    {
      endpoint: "default/server",
      direction: "ingress",
      identity: 302,
      proto: 6,
      lo: 81,
      hi: 81,
      spec: http("/x"),
      allowAll: true,
    },
  ],
};

const c = (address: string, port = 40000): { address: string; port: number } => ({ address, port });

describe("PolicyTable.identify: whose policy applies to a redirected connection", () => {
  const t = new PolicyTable(SNAP);
  const cases: {
    name: string;
    client: string;
    dst: string;
    port: number;
    want:
      | {
          direction: string;
          endpoint: string;
          peerEndpoint?: string;
          srcIdentity: number;
          dstIdentity: number;
        }
      | undefined;
  }[] = [
    {
      name: "client egress L7 to a local server: egress first, the server named as peer",
      client: "10.200.0.5",
      dst: "10.200.0.6",
      port: 80,
      want: {
        direction: "egress",
        endpoint: "default/client",
        peerEndpoint: "default/server",
        srcIdentity: 300,
        dstIdentity: 301,
      },
    },
    {
      name: "no egress L7 on the client: the server's ingress applies",
      client: "10.200.0.7",
      dst: "10.200.0.6",
      port: 80,
      want: { direction: "ingress", endpoint: "default/server", srcIdentity: 302, dstIdentity: 301 },
    },
    {
      name: "an outside client: its identity from the ipcache, the server's ingress applies",
      client: "198.51.100.9",
      dst: "10.200.0.6",
      port: 80,
      want: { direction: "ingress", endpoint: "default/server", srcIdentity: 16777217, dstIdentity: 301 },
    },
    {
      name: "egress to the world on a wildcard-identity L7 port (world identity 2)",
      client: "10.200.0.5",
      dst: "203.0.113.1",
      port: 8080,
      want: { direction: "egress", endpoint: "default/client", srcIdentity: 300, dstIdentity: 2 },
    },
    {
      name: "a v4 client seen on a dual-stack socket (::ffff:) is the same client",
      client: "::ffff:10.200.0.5",
      dst: "10.200.0.6",
      port: 80,
      want: {
        direction: "egress",
        endpoint: "default/client",
        peerEndpoint: "default/server",
        srcIdentity: 300,
        dstIdentity: 301,
      },
    },
    {
      name: "no L7 rule on either end for this port: undefined (fail closed)",
      client: "10.200.0.5",
      dst: "10.200.0.6",
      port: 443,
      want: undefined,
    },
    {
      name: "an unknown client to a port only its egress could cover: undefined",
      client: "192.0.2.1",
      dst: "203.0.113.1",
      port: 8080,
      want: undefined,
    },
  ];
  for (const k of cases) {
    test(k.name, () => {
      const info = t.identify(c(k.client), c(k.dst, k.port), 6);
      if (k.want === undefined) return assert.equal(info, undefined);
      assert.ok(info);
      assert.deepEqual(
        {
          direction: info.direction,
          endpoint: info.endpoint,
          ...(info.peerEndpoint ? { peerEndpoint: info.peerEndpoint } : {}),
          srcIdentity: info.srcIdentity,
          dstIdentity: info.dstIdentity,
        },
        k.want,
      );
      assert.deepEqual(info.originalDst, { host: plainAddress(k.dst), port: k.port });
    });
  }
});

describe("PolicyTable.forConnection: the stages a request must pass", () => {
  const t = new PolicyTable(SNAP);
  const paths = (r: ReturnType<PolicyTable["forConnection"]>): string[] => {
    const out: string[] = [];
    for (let s = r; s; s = s.also) out.push(`${s.spec.http[0]?.path ?? ""}${s.allowAll ? " (all)" : ""}`);
    return out;
  };
  test("both ends have L7 rules: the client's egress, then the server's ingress", () => {
    const info = t.identify(c("10.200.0.5"), c("10.200.0.6", 80), 6);
    assert.ok(info);
    assert.deepEqual(paths(t.forConnection(lookupKey(info))), ["/out", "/in"]);
  });
  test("a specific identity's entry wins over the wildcard, and a shadowed one admits all", () => {
    const info = t.identify(c("10.200.0.7"), c("10.200.0.6", 81), 6);
    assert.ok(info);
    assert.deepEqual(paths(t.forConnection(lookupKey(info))), ["/x (all)"]);
  });
  test("after a snapshot without the rules, the same connection has no policy (the next request fails closed)", () => {
    const info = t.identify(c("10.200.0.5"), c("10.200.0.6", 80), 6);
    assert.ok(info);
    const empty = new PolicyTable({ ...SNAP, version: 8, l7: [] });
    assert.equal(empty.forConnection(lookupKey(info)), undefined);
  });
  test("a connection the node opened (CT_FROM_HOST) is host, even from an address an endpoint also has", () => {
    const info = t.identify(c("10.200.0.7"), c("10.200.0.6", 80), 6, true);
    assert.ok(info);
    assert.deepEqual([info.srcIdentity, info.direction, info.endpoint], [1, "ingress", "default/server"]);
  });
  test("UDP entries are not TCP entries", () => {
    assert.equal(t.identify(c("10.200.0.5"), c("10.200.0.6", 80), 17), undefined);
  });
});

const ADDR = { address: "10.0.0.1", port: 80 };
const EVENT = {
  type: "http",
  verdict: "denied",
  direction: "ingress",
  srcIdentity: 300,
  dstIdentity: 301,
  endpoint: "default/server",
};

describe("IPC messages are shape-checked", () => {
  const cases: { name: string; msg: unknown; from?: boolean; ok: boolean }[] = [
    { name: "an ack", msg: { type: "ack", version: 3 }, from: true, ok: true },
    { name: "an ack without a version", msg: { type: "ack" }, from: true, ok: false },
    {
      name: "a DNS answer with a non-string address",
      msg: { type: "dns-answer", id: 1, endpoint: "a/b", name: "x.", ips: [1], ttl: 5 },
      from: true,
      ok: false,
    },
    {
      name: "a DNS answer",
      msg: { type: "dns-answer", id: 1, endpoint: "a/b", name: "x.", ips: ["1.2.3.4"], ttl: 5 },
      from: true,
      ok: true,
    },
    {
      name: "an L7 event without addresses",
      msg: { type: "l7", event: { type: "http" } },
      from: true,
      ok: false,
    },
    { name: "an unknown type", msg: { type: "shell", cmd: "rm" }, from: true, ok: false },
    {
      name: "a DNS answer with a NaN TTL",
      msg: { type: "dns-answer", id: 1, endpoint: "a/b", name: "x.", ips: [], ttl: NaN },
      from: true,
      ok: false,
    },
    {
      name: "a DNS answer with a name over 255",
      msg: { type: "dns-answer", id: 1, endpoint: "a/b", name: "a".repeat(256), ips: [], ttl: 5 },
      from: true,
      ok: false,
    },
    {
      name: "a DNS answer with 257 addresses",
      msg: {
        type: "dns-answer",
        id: 1,
        endpoint: "a/b",
        name: "x.",
        ips: Array(257).fill("1.2.3.4"),
        ttl: 5,
      },
      from: true,
      ok: false,
    },
    {
      name: "an L7 event with an unknown verdict",
      msg: { type: "l7", event: { ...EVENT, verdict: "allowed" }, src: ADDR, dst: ADDR },
      from: true,
      ok: false,
    },
    {
      name: "an L7 event with a port out of range",
      msg: { type: "l7", event: EVENT, src: { address: "10.0.0.1", port: 70000 }, dst: ADDR },
      from: true,
      ok: false,
    },
    { name: "an L7 event", msg: { type: "l7", event: EVENT, src: ADDR, dst: ADDR }, from: true, ok: true },
    { name: "null", msg: null, from: true, ok: false },
    {
      name: "a snapshot",
      msg: { type: "snapshot", snapshot: { version: 1, ipcache: [], endpoints: [], l7: [] } },
      ok: true,
    },
    {
      name: "a snapshot without l7",
      msg: { type: "snapshot", snapshot: { version: 1, ipcache: [], endpoints: [] } },
      ok: false,
    },
    { name: "dns-done with a string id", msg: { type: "dns-done", id: "1", ok: true }, ok: false },
    { name: "dns-done with until", msg: { type: "dns-done", id: 1, ok: true, until: 1e12 }, ok: true },
    {
      name: "dns-done with a fractional until",
      msg: { type: "dns-done", id: 1, ok: true, until: 1.5 },
      ok: false,
    },
    {
      name: "dns-done with a string until",
      msg: { type: "dns-done", id: 1, ok: true, until: "9" },
      ok: false,
    },
    {
      name: "dns-forget of pairs",
      msg: { type: "dns-forget", id: 1, pairs: [{ name: "x", ip: "1.2.3.4" }] },
      ok: true,
    },
    { name: "dns-forget of everything", msg: { type: "dns-forget", id: 1 }, ok: true },
    { name: "dns-forget without an id", msg: { type: "dns-forget", pairs: [] }, ok: false },
    { name: "dns-forget with pairs not a list", msg: { type: "dns-forget", id: 1, pairs: "x" }, ok: false },
    { name: "dns-forgot", msg: { type: "dns-forgot", id: 1 }, from: true, ok: true },
    { name: "dns-forgot without an id", msg: { type: "dns-forgot" }, from: true, ok: false },
    { name: "dns-seen of 257 answers", msg: { type: "dns-seen", answers: Array(257).fill({ endpoint: "a/b", name: "x", ips: [], ttl: 1 }) }, from: true, ok: false }, // prettier-ignore
  ];
  test("dns-seen: each answer rebuilt as a dns-answer would be, a malformed one dropped alone", () => {
    const good = { endpoint: "a/b", name: "x.", ips: ["1.2.3.4"], ttl: 5 };
    const m = fromProxy({
      type: "dns-seen",
      answers: [good, { ...good, ips: [1] }, { ...good, extra: "y" }],
    });
    assert.deepEqual(m, { type: "dns-seen", answers: [good, good] });
  });
  test("dns-forget with a pair it cannot read withdraws everything (never keeps what the agent withdrew)", () => {
    const m = toProxy({ type: "dns-forget", id: 4, pairs: [{ name: "x", ip: "1.2.3.4" }, { name: 5 }] });
    assert.deepEqual(m, { type: "dns-forget", id: 4 });
  });
  test("a batch of L7 events: each rebuilt as a single one, a malformed one dropped alone; an over-long batch refused", () => {
    const m = fromProxy({
      type: "l7-batch",
      events: [
        { event: EVENT, src: ADDR, dst: ADDR },
        { event: { ...EVENT, verdict: "allowed" }, src: ADDR, dst: ADDR },
        "junk",
        { event: { ...EVENT, injected: 1 }, src: ADDR, dst: ADDR },
      ],
    });
    assert.ok(m && m.type === "l7-batch");
    assert.deepEqual(m.events, [
      { event: EVENT, src: ADDR, dst: ADDR },
      { event: EVENT, src: ADDR, dst: ADDR },
    ]);
    const long = Array.from({ length: MAX_L7_BATCH + 1 }, () => ({ event: EVENT, src: ADDR, dst: ADDR }));
    assert.equal(fromProxy({ type: "l7-batch", events: long }), undefined);
    assert.equal(fromProxy({ type: "l7-batch", events: "x" }), undefined);
  });
  test("an L7 event is rebuilt: malformed optional fields and unknown fields are dropped", () => {
    const m = fromProxy({
      type: "l7",
      event: { ...EVENT, method: "PUT", topics: "not-a-list", status: 1.5, injected: { x: 1 } },
      src: ADDR,
      dst: ADDR,
    });
    assert.ok(m && m.type === "l7");
    assert.deepEqual(m.event, { ...EVENT, method: "PUT" });
  });
  test("the header actions the proxy applied cross into the agent (and only as a list of texts)", () => {
    const m = fromProxy({
      type: "l7",
      event: { ...EVENT, headerActions: ["ADD x-trace: on", "LOG x-token"] },
      src: ADDR,
      dst: ADDR,
    });
    assert.ok(m && m.type === "l7");
    assert.deepEqual(m.event.headerActions, ["ADD x-trace: on", "LOG x-token"]);
    const bad = fromProxy({
      type: "l7",
      event: { ...EVENT, headerActions: [{ x: 1 }] },
      src: ADDR,
      dst: ADDR,
    });
    assert.ok(bad && bad.type === "l7");
    assert.equal(bad.event.headerActions, undefined);
  });
  for (const k of cases) {
    test(`${k.ok ? "accepts" : "drops"} ${k.name}`, () => {
      const r = k.from ? fromProxy(k.msg) : toProxy(k.msg);
      assert.equal(r !== undefined, k.ok);
    });
  }
});
