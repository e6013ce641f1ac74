/**
 * Which established connections a new L7 redirect covers (bypass.ts): only
 * the endpoint, direction, peer identity, protocol and port the redirect
 * names, never connections already proxied or the proxy's own.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { bypassing, redirectCandidates, segmentFor, type CtEntry } from "../../src/datapath/bypass.js";
import {
  CT_FROM_HOST,
  CT_PROXY_UPSTREAM,
  CT_REDIRECT_L7,
  type DatapathEndpoint,
  type DatapathState,
  type PolicySegment,
} from "../../src/datapath/types.js";

const seg = (
  identity: number,
  proto: number,
  lo: number,
  hi: number,
  action: PolicySegment["action"],
): PolicySegment => ({
  identity,
  proto,
  lo,
  hi,
  action,
  ruleId: 1,
  ...(action === "redirect" ? { proxy: "l7" as const } : {}),
});

// web 10.0.0.2 (identity 300), client 10.0.0.3 (301), other 10.0.0.4 (302); the node is 10.0.0.1.
const ep = (
  id: number,
  ipv4: string,
  identity: number,
  ingress: PolicySegment[],
  egress: PolicySegment[] = [],
): DatapathEndpoint => ({
  id,
  name: `e${id}`,
  hostIfname: `v${id}`,
  ipv4,
  identity,
  ingress: { enforced: true, segments: ingress },
  egress: { enforced: egress.length > 0, segments: egress },
});

const state = (web: PolicySegment[], clientEgress: PolicySegment[] = []): DatapathState => ({
  ipcache: [
    { prefix: "10.0.0.2/32", identity: 300 },
    { prefix: "10.0.0.3/32", identity: 301 },
    { prefix: "10.0.0.4/32", identity: 302 },
  ],
  endpoints: [
    ep(1, "10.0.0.2", 300, web),
    ep(2, "10.0.0.3", 301, [], clientEgress),
    ep(3, "10.0.0.4", 302, []),
  ],
  rules: [],
  hostIdentity: 1,
});

const L4 = state([
  seg(301, 6, 80, 80, "allow"),
  seg(301, 6, 8080, 8080, "allow"),
  seg(302, 6, 80, 80, "allow"),
]);
const L7 = state([
  seg(301, 6, 80, 80, "redirect"),
  seg(301, 6, 8080, 8080, "allow"),
  seg(302, 6, 80, 80, "allow"),
]);

const conn = (src: string, dst: string, dstPort: number, mark = 0, proto = 6): CtEntry => ({
  proto,
  src,
  srcPort: 40000,
  dst,
  dstPort,
  mark,
});

describe("bypass: connections a new redirect covers", () => {
  test("candidates: only endpoint directions that gained a redirect segment", () => {
    assert.deepEqual([...redirectCandidates(L4, L7)], ["1:in"]);
    assert.deepEqual([...redirectCandidates(L7, L7)], [], "unchanged: nothing to do, no dump");
    assert.deepEqual([...redirectCandidates(L7, L4)], [], "a removed redirect resets nothing here");
    assert.deepEqual([...redirectCandidates(undefined, L7)], ["1:in"], "first enforce: every redirect");
  });

  test("segmentFor: a specific identity before any, a protocol's segment before all-protocols", () => {
    const pol = { enforced: true, segments: [seg(0, 6, 80, 80, "redirect"), seg(301, 0, 0, 65535, "allow")] };
    assert.equal(segmentFor(pol, 301, 6, 80)?.action, "allow");
    assert.equal(segmentFor(pol, 302, 6, 80)?.action, "redirect");
    assert.equal(segmentFor(pol, 302, 6, 81), undefined);
  });

  const cases: { name: string; entry: CtEntry; want: string[] }[] = [
    {
      name: "client -> web:80, unproxied: reset on web's ingress",
      entry: conn("10.0.0.3", "10.0.0.2", 80),
      want: ["1:in 10.0.0.2:80 <- 10.0.0.3:40000"],
    },
    { name: "another port of the same peer", entry: conn("10.0.0.3", "10.0.0.2", 8080), want: [] },
    { name: "another peer on the same port", entry: conn("10.0.0.4", "10.0.0.2", 80), want: [] },
    {
      name: "already proxied (redirect bit)",
      entry: conn("10.0.0.3", "10.0.0.2", 80, CT_REDIRECT_L7 | CT_FROM_HOST),
      want: [],
    },
    {
      name: "the proxy's upstream connection",
      entry: conn("10.0.0.1", "10.0.0.2", 80, CT_PROXY_UPSTREAM),
      want: [],
    },
    { name: "UDP to the same port", entry: conn("10.0.0.3", "10.0.0.2", 80, 0, 17), want: [] },
    {
      name: "web dialling out from port 80 (the other direction)",
      entry: conn("10.0.0.2", "10.0.0.3", 80),
      want: [],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = bypassing([c.entry], L7, redirectCandidates(L4, L7)).flatMap((b) =>
        b.sides.map(
          (s) =>
            `${s.endpointId}:${s.dir} ${s.local.address}:${s.local.port} <- ${s.peer.address}:${s.peer.port}`,
        ),
      );
      assert.deepEqual(got, c.want);
    });
  }

  test("egress: the client's own connection to a port its egress now redirects", () => {
    const before = state([seg(301, 6, 80, 80, "allow")], [seg(300, 6, 80, 80, "allow")]);
    const after = state([seg(301, 6, 80, 80, "allow")], [seg(300, 6, 80, 80, "redirect")]);
    const got = bypassing([conn("10.0.0.3", "10.0.0.2", 80)], after, redirectCandidates(before, after));
    assert.deepEqual(
      got.flatMap((b) => b.sides.map((s) => `${s.endpointId}:${s.dir}`)),
      ["2:out"],
    );
  });

  test("the node's own connection (peer identity host, from its local addresses)", () => {
    const hostL7 = state([seg(1, 6, 80, 80, "redirect")]);
    const got = bypassing([conn("10.0.0.1", "10.0.0.2", 80, CT_FROM_HOST)], hostL7, new Set(["1:in"]), [
      "10.0.0.1",
    ]);
    assert.equal(got.length, 1);
    assert.deepEqual(
      bypassing([conn("10.0.0.1", "10.0.0.2", 80)], hostL7, new Set(["1:in"])),
      [],
      "not local: world",
    );
  });
});
