// Routes between "nodes" (network namespaces on an underlay bridge in a namespace of its own), each
// with a pod behind a veth: reconcilePeerRoutes from a node list, native and VXLAN; pods ping across
// nodes; a second reconcile changes nothing; a peer gone takes its routes (and FDB/neighbours) along.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  desiredRoutes,
  reconcilePeerRoutes,
  readPeerState,
  VXLAN_DEVICE,
  vtepMac,
} from "../../src/datapath/peer-routes.js";
import type { PeerNode, PeerRoutingConfig } from "../../src/datapath/peer-routes.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { pings, sh, Underlay, type TestNode } from "../../src/lab/underlay.js";

const skip = rootSkipReason();

const peersOf = (nodes: readonly TestNode[], self: TestNode): PeerNode[] =>
  nodes.filter((n) => n !== self).map((n) => ({ name: n.name, ip: n.ip, podCidrs: [n.podCidr] }));

async function threeNodes(tag: string): Promise<Underlay> {
  const u = await Underlay.create(uniquePrefix(tag));
  for (const i of [1, 2, 3]) await u.node(i, { pod: true });
  return u;
}

for (const mode of ["native", "vxlan"] as const) {
  describe(`routing between nodes (${mode}, root)`, { skip }, () => {
    test(`${mode}: pods on three nodes reach each other; reconcile is idempotent; a peer gone loses its routes`, async () => {
      const u = await threeNodes(mode === "native" ? "rtn" : "rtv");
      try {
        const cfg = (n: TestNode): PeerRoutingConfig => ({ netns: n.netns, mode, localIp: n.ip });
        const [n1, n2, n3] = u.nodes as [TestNode, TestNode, TestNode];
        assert.equal(await pings(n1.pod, n2.podIp), false, "no route before reconcile");
        for (const n of u.nodes)
          assert.ok((await reconcilePeerRoutes(cfg(n), peersOf(u.nodes, n))).length > 0);
        for (const [a, b] of [
          [n1, n2],
          [n2, n3],
          [n3, n1],
        ] as const) {
          assert.ok(await pings(a.pod, b.podIp), `${a.name}'s pod pings ${b.name}'s pod`);
        }
        // TCP across nodes too (a listener in node 3's pod).
        const srv = sh(n3.pod, ["timeout", "5", "socat", "-u", "TCP-LISTEN:7000", "STDOUT"]);
        await new Promise((r) => setTimeout(r, 200));
        await sh(n1.pod, ["sh", "-c", `echo hello | socat -u STDIN TCP:${n3.podIp}:7000,connect-timeout=3`]);
        assert.equal((await srv).trim(), "hello");

        // Idempotent: the same peers again change nothing (a restarted agent).
        for (const n of u.nodes) assert.deepEqual(await reconcilePeerRoutes(cfg(n), peersOf(u.nodes, n)), []);

        if (mode === "vxlan") {
          const s = await readPeerState(n1.netns, n1.ip);
          assert.equal(s.device?.vni, 1);
          assert.equal(s.device?.port, 8472);
          assert.equal(s.device?.mtu, 1500 - 50, "MTU = underlay MTU - 50");
          assert.equal(s.device?.mac, vtepMac(n1.ip));
          assert.equal(s.fdb.get(vtepMac(n2.ip)), n2.ip);
        }

        // Node 3 leaves: node 1's routes (and FDB/neighbours) to it go; node 2 stays reachable.
        const left = u.nodes.filter((n) => n !== n3);
        const lines = await reconcilePeerRoutes(cfg(n1), peersOf(left, n1));
        assert.ok(
          lines.some((l) => l.startsWith(`route del ${n3.podCidr}`)),
          lines.join("\n"),
        );
        const s = await readPeerState(n1.netns, n1.ip);
        assert.equal(s.routes.has(n3.podCidr), false);
        assert.equal(s.routes.has(n2.podCidr), true);
        if (mode === "vxlan") {
          assert.equal(s.fdb.has(vtepMac(n3.ip)), false);
          assert.equal(s.neighs.has("10.223.0.0"), false);
        }
        assert.equal(await pings(n1.pod, n3.podIp), false);
        assert.ok(await pings(n1.pod, n2.podIp));
        // Nothing else in the node was touched: its connected routes are there.
        assert.match(await sh(n1.netns, ["ip", "route", "show", "dev", "pod0"]), /10\.221\.0\.0\/24/);
      } finally {
        await u.destroy();
      }
    });
  });
}

describe("routing: switching modes (root)", { skip }, () => {
  test("native -> vxlan -> native: the routes follow, the VXLAN device goes when unused", async () => {
    const u = await Underlay.create(uniquePrefix("rts"));
    try {
      await u.node(1, { pod: true });
      await u.node(2, { pod: true });
      const [n1, n2] = u.nodes as [TestNode, TestNode];
      for (const mode of ["native", "vxlan", "native"] as const) {
        for (const n of u.nodes)
          await reconcilePeerRoutes({ netns: n.netns, mode, localIp: n.ip }, peersOf(u.nodes, n));
        assert.ok(await pings(n1.pod, n2.podIp), `${mode}: ping across`);
        const s = await readPeerState(n1.netns, n1.ip);
        assert.equal(s.device !== undefined, mode === "vxlan", `${mode}: ${VXLAN_DEVICE} present?`);
        assert.equal(s.routes.get(n2.podCidr)?.dev === VXLAN_DEVICE, mode === "vxlan");
      }
    } finally {
      await u.destroy();
    }
  });
});

describe("routing: bad input (root)", { skip }, () => {
  test("vxlan with a node address no link holds: a clear error naming it, nothing changed; a bad peer is left out", async () => {
    const u = await Underlay.create(uniquePrefix("rtb"));
    try {
      const n = await u.node(1, { pod: true });
      const before = await sh(n.netns, ["ip", "-d", "link"]);
      await assert.rejects(
        reconcilePeerRoutes({ netns: n.netns, mode: "vxlan", localIp: "172.31.9.9" }, []),
        (e: Error & { code?: string }) =>
          e.code === "NETNS_FAILED" && /no link of the node holds its address 172\.31\.9\.9/.test(e.message),
      );
      // A peer whose address is not one is left out (one bad record must not block the others).
      const { skipped } = desiredRoutes({ mode: "native", localIp: n.ip }, [
        { name: "x", ip: "not-an-ip", podCidrs: ["10.9.0.0/24"] },
      ]);
      assert.match(skipped.join(), /x: underlay address not-an-ip/);
      assert.equal(await sh(n.netns, ["ip", "-d", "link"]), before);
      assert.deepEqual([...(await readPeerState(n.netns, n.ip)).routes.keys()], []);
    } finally {
      await u.destroy();
    }
  });
});

describe("routing: IPv6 pod CIDRs through VXLAN over an IPv4 underlay (root)", { skip }, () => {
  test("dual-stack pods on two nodes ping each other over IPv6 through the tunnel", async () => {
    const u = await Underlay.create(uniquePrefix("rt6"));
    try {
      await u.node(1, { pod: true, ipv6: true });
      await u.node(2, { pod: true, ipv6: true });
      const [n1, n2] = u.nodes as [TestNode, TestNode];
      const peers = (self: TestNode): PeerNode[] =>
        u.nodes
          .filter((n) => n !== self)
          .map((n) => ({ name: n.name, ip: n.ip, podCidrs: [n.podCidr, n.podCidr6 ?? ""] }));
      for (const n of u.nodes)
        await reconcilePeerRoutes({ netns: n.netns, mode: "vxlan", localIp: n.ip }, peers(n));
      assert.ok(await pings(n1.pod, n2.podIp6 ?? ""), "IPv6 across the tunnel");
      assert.ok(await pings(n2.pod, n1.podIp), "IPv4 across the tunnel");
      const s = await readPeerState(n1.netns, n1.ip);
      assert.equal(s.routes.get(n2.podCidr6 ?? "")?.dev, VXLAN_DEVICE);
      for (const n of u.nodes) {
        assert.deepEqual(
          await reconcilePeerRoutes({ netns: n.netns, mode: "vxlan", localIp: n.ip }, peers(n)),
          [],
        );
      }
      // Native routing cannot carry IPv6 pods over an IPv4-only underlay: said, not routed.
      assert.match(
        desiredRoutes({ mode: "native", localIp: n1.ip }, peers(n1)).skipped.join(),
        /needs an IPv6 underlay/,
      );
    } finally {
      await u.destroy();
    }
  });
});
