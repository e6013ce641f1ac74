/**
 * Real packets through a node namespace with three endpoints (needs root).
 * Every case runs on IPv4 and IPv6.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DirectionPolicy, PolicySegment } from "../../src/datapath/types.js";
import { Lab, rootSkipReason, type Host } from "./harness.js";
import { TCP_FLAGS, icmpEcho, sctpInit, tcpSegment, udpDatagram } from "./packets.js";

const skip = rootSkipReason();
const A = 1001;
const B = 1002;
const C = 1003;
const HOST = 1;
const TCP = 6;
const UDP = 17;

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

/** b: default deny with allows for a; c: not enforced with one deny; a: egress denies udp/5353 to c. */
function policies(opts: {
  aMayUseB80: boolean;
}): Record<string, { ingress?: DirectionPolicy; egress?: DirectionPolicy }> {
  return {
    b: {
      ingress: {
        enforced: true,
        segments: [
          ...(opts.aMayUseB80 ? [seg(A, TCP, 80, 80)] : []),
          seg(A, TCP, 81, 81, "allow", 2), // A's view of the wildcard below
          seg(A, TCP, 8000, 8100),
          seg(A, UDP, 53, 53),
          seg(A, 1, 8, 8),
          seg(A, 58, 128, 128),
          seg(A, 132, 7000, 7000),
          seg(A, TCP, 9000, 9000, "deny", 4),
          seg(C, TCP, 81, 81, "deny", 3),
          seg(C, TCP, 9000, 9000, "deny", 4),
          seg(0, TCP, 81, 81, "allow", 2),
          seg(0, TCP, 9000, 9000, "deny", 4),
          seg(HOST, TCP, 8080, 8080),
        ],
      },
    },
    c: { ingress: { enforced: false, segments: [seg(A, TCP, 9000, 9000, "deny", 5)] } },
    a: {
      egress: {
        enforced: true,
        segments: [
          seg(C, UDP, 5353, 5353, "deny", 6),
          seg(C, UDP, 0, 5352, "allow", 7),
          seg(C, UDP, 5354, 65535, "allow", 7),
          seg(C, 0, 0, 0, "allow", 7),
          seg(0, 0, 0, 0, "allow", 7),
        ],
      },
    },
  };
}

describe("datapath traffic (root: netns, nftables, real packets)", { skip: skip ?? false }, () => {
  let lab: Lab;
  before(async () => {
    lab = await Lab.create(
      "tr",
      [
        { name: "a", id: 1, identity: A },
        { name: "b", id: 2, identity: B },
        { name: "c", id: 3, identity: C },
      ],
      { tcp: [80, 81, 8080, 9000], udp: [53, 5353] },
    );
    await lab.reconciler.apply(lab.state(policies({ aMayUseB80: true })));
  });
  after(async () => {
    await lab?.destroy();
  });

  for (const fam of ["IPv4", "IPv6"] as const) {
    const addr = (name: string): string => (fam === "IPv4" ? lab.ep(name).ipv4 : lab.ep(name).ipv6);
    const from = (name: string): Host => (name === "node" ? lab.nodeHost : lab.ep(name));
    const cases: {
      name: string;
      from: string;
      to: string;
      kind: "tcp" | "udp" | "ping";
      port?: number;
      want: string;
    }[] = [
      {
        name: "an allowed identity reaches an allowed port",
        from: "a",
        to: "b",
        kind: "tcp",
        port: 80,
        want: "ok",
      },
      {
        name: "a port inside an allowed range is allowed",
        from: "a",
        to: "b",
        kind: "tcp",
        port: 8080,
        want: "ok",
      },
      {
        name: "another identity is dropped by default deny",
        from: "c",
        to: "b",
        kind: "tcp",
        port: 80,
        want: "timeout",
      },
      {
        name: "an identity-0 segment allows any identity",
        from: "a",
        to: "b",
        kind: "tcp",
        port: 81,
        want: "ok",
      },
      {
        name: "a deny for one identity beats the wildcard allow",
        from: "c",
        to: "b",
        kind: "tcp",
        port: 81,
        want: "timeout",
      },
      {
        name: "a wildcard deny drops every identity",
        from: "a",
        to: "b",
        kind: "tcp",
        port: 9000,
        want: "timeout",
      },
      { name: "UDP is allowed by identity and port", from: "a", to: "b", kind: "udp", port: 53, want: "ok" },
      {
        name: "UDP from another identity is dropped",
        from: "c",
        to: "b",
        kind: "udp",
        port: 53,
        want: "timeout",
      },
      { name: "ICMP echo is allowed by identity and type", from: "a", to: "b", kind: "ping", want: "ok" },
      {
        name: "ICMP echo from another identity is dropped",
        from: "c",
        to: "b",
        kind: "ping",
        want: "timeout",
      },
      {
        name: "a direction that is not enforced accepts",
        from: "a",
        to: "c",
        kind: "tcp",
        port: 80,
        want: "ok",
      },
      {
        name: "a deny segment applies when not enforced",
        from: "a",
        to: "c",
        kind: "tcp",
        port: 9000,
        want: "timeout",
      },
      {
        name: "the source's egress deny drops what the destination allows",
        from: "a",
        to: "c",
        kind: "udp",
        port: 5353,
        want: "timeout",
      },
      {
        name: "the egress deny is specific to its port",
        from: "a",
        to: "c",
        kind: "udp",
        port: 53,
        want: "ok",
      },
      {
        name: "another source is not affected by that egress deny",
        from: "b",
        to: "c",
        kind: "udp",
        port: 5353,
        want: "ok",
      },
      {
        name: "the node has the host identity: allowed port",
        from: "node",
        to: "b",
        kind: "tcp",
        port: 8080,
        want: "ok",
      },
      {
        name: "the node has the host identity: other port dropped",
        from: "node",
        to: "b",
        kind: "tcp",
        port: 80,
        want: "timeout",
      },
      {
        name: "an endpoint with egress enforced reaches the node via its wildcard allow",
        from: "a",
        to: "node",
        kind: "ping",
        want: "ok",
      },
    ];
    test(`${fam}: verdicts by identity, protocol and port`, async () => {
      const nodeAddr = fam === "IPv4" ? "10.200.0.1" : "fd00:200::1";
      const results = await Promise.all(
        cases.map(async (c) => {
          const dst = c.to === "node" ? nodeAddr : addr(c.to);
          const h = from(c.from);
          const got =
            c.kind === "tcp"
              ? await h.tcp(dst, c.port ?? 0)
              : c.kind === "udp"
                ? await h.udp(dst, c.port ?? 0)
                : await h.ping(dst);
          return `${c.name}: ${got}`;
        }),
      );
      assert.deepEqual(
        results,
        cases.map((c) => `${c.name}: ${c.want}`),
      );
    });

    test(`${fam}: a spoofed source address is dropped at the sender's veth`, async () => {
      const a = lab.ep("a");
      const spoofed = fam === "IPv4" ? "10.200.0.99" : "fd00:200::99";
      await a.exec([
        "ip",
        "addr",
        "add",
        `${spoofed}/${fam === "IPv4" ? 32 : 128}`,
        "dev",
        "eth0",
        ...(fam === "IPv6" ? ["nodad"] : []),
      ]);
      try {
        const before = await lab.ep("c").count("udp", 53);
        assert.equal(await a.udp(addr("c"), 53, spoofed), "timeout");
        assert.equal(await lab.ep("c").count("udp", 53), before, "the spoofed datagram must not arrive");
        assert.equal(await a.udp(addr("c"), 53), "ok", "control: the real source address passes");
      } finally {
        await a.exec(["ip", "addr", "del", `${spoofed}/${fam === "IPv4" ? 32 : 128}`, "dev", "eth0"]);
      }
    });

    // Why the established accept comes after the sender's anti-spoofing (compile.ts pre_c), not
    // first: conntrack matches the 5-tuple only, so a packet forged from another endpoint with a
    // tracked flow's addresses and ports would pass as "established" (rp_filter is off).
    test(`${fam}: a datagram forged into another endpoint's established UDP flow is dropped`, async () => {
      const [a, b, c] = [lab.ep("a"), lab.ep("b"), lab.ep("c")];
      const port = fam === "IPv4" ? 40104 : 40106;
      const ctr = `est${fam === "IPv4" ? 4 : 6}`;
      await b.addCounter(ctr, `udp sport 5400 udp dport ${port}`);
      // b -> c:5400 and c's answer (no listener there: the answer is the test's own): a flow
      // conntrack holds as established.
      await b.raw(addr("c"), 17, udpDatagram(addr("b"), addr("c"), port, 5400, "query"), addr("b"));
      await c.raw(addr("b"), 17, udpDatagram(addr("c"), addr("b"), 5400, port, "answer"), addr("c"));
      assert.equal(await b.readCounter(ctr), 1, "control: c's answer arrives");
      const plen = fam === "IPv4" ? 32 : 128;
      await a.exec([
        "ip",
        "addr",
        "add",
        `${addr("c")}/${plen}`,
        "dev",
        "eth0",
        ...(fam === "IPv6" ? ["nodad"] : []),
      ]);
      try {
        await a.raw(addr("b"), 17, udpDatagram(addr("c"), addr("b"), 5400, port, "forged"), addr("c"));
        assert.equal(await b.readCounter(ctr), 1, "a's forged answer must not arrive");
      } finally {
        await a.exec(["ip", "addr", "del", `${addr("c")}/${plen}`, "dev", "eth0"]);
      }
      await c.raw(addr("b"), 17, udpDatagram(addr("c"), addr("b"), 5400, port, "again"), addr("c"));
      assert.equal(await b.readCounter(ctr), 2, "control: the flow is still established");
    });

    test(`${fam}: a TCP ACK or RST without a connection is subject to policy`, async () => {
      const b = lab.ep("b");
      const ctr = `ack${fam === "IPv4" ? 4 : 6}`;
      await b.addCounter(ctr, `meta l4proto tcp tcp sport 40000 tcp flags & (syn | ack | rst) != syn`);
      for (const flags of [TCP_FLAGS.ack, TCP_FLAGS.rst, TCP_FLAGS.ack | TCP_FLAGS.psh]) {
        await lab.ep("c").raw(addr("b"), 6, tcpSegment(addr("c"), addr("b"), 40000, 80, flags), addr("c"));
      }
      assert.equal(await b.readCounter(ctr), 0, "ACK/RST from a denied identity must not arrive");
      await lab
        .ep("a")
        .raw(addr("b"), 6, tcpSegment(addr("a"), addr("b"), 40000, 8080, TCP_FLAGS.ack), addr("a"));
      assert.equal(await b.readCounter(ctr), 1, "control: an ACK from an allowed identity arrives");
    });

    test(`${fam}: an ICMP echo-reply without a request is dropped`, async () => {
      const b = lab.ep("b");
      const v6 = fam === "IPv6";
      const proto = v6 ? 58 : 1;
      const ctr = `icmp${v6 ? 6 : 4}`;
      await b.addCounter(ctr, `meta l4proto ${proto} @th,32,16 0x4242`);
      await lab.ep("c").raw(addr("b"), proto, icmpEcho(v6 ? 129 : 0, v6));
      await lab.ep("a").raw(addr("b"), proto, icmpEcho(v6 ? 129 : 0, v6));
      assert.equal(await b.readCounter(ctr), 0, "echo-replies that answer nothing must not arrive");
      await lab.ep("a").raw(addr("b"), proto, icmpEcho(v6 ? 128 : 8, v6));
      assert.equal(await b.readCounter(ctr), 1, "control: an allowed echo-request arrives");
    });

    test(`${fam}: SCTP is matched by port (raw INIT; the kernel has no SCTP sockets)`, async () => {
      const b = lab.ep("b");
      const ctr = `sctp${fam === "IPv4" ? 4 : 6}`;
      await b.addCounter(ctr, "meta l4proto 132");
      await lab.ep("c").raw(addr("b"), 132, sctpInit(5000, 7000));
      await lab.ep("a").raw(addr("b"), 132, sctpInit(5000, 7001));
      assert.equal(
        await b.readCounter(ctr),
        0,
        "SCTP from a denied identity or to a denied port must not arrive",
      );
      await lab.ep("a").raw(addr("b"), 132, sctpInit(5000, 7000));
      assert.equal(await b.readCounter(ctr), 1, "an allowed SCTP INIT arrives");
    });
  }

  test("an established connection survives a policy change that denies new ones (both families)", async () => {
    const a = lab.ep("a");
    const b = lab.ep("b");
    assert.equal(await a.open("c4", b.ipv4, 80), "ok");
    assert.equal(await a.open("c6", b.ipv6, 80), "ok");
    const r = await lab.reconciler.apply(lab.state(policies({ aMayUseB80: false })));
    try {
      assert.ok(r.changed && r.ops <= 4, `small transaction, got ${r.ops} ops`);
      assert.deepEqual(
        [await a.tcp(b.ipv4, 80), await a.tcp(b.ipv6, 80), await a.send("c4"), await a.send("c6")],
        ["timeout", "timeout", "ok", "ok"],
      );
    } finally {
      await lab.reconciler.apply(lab.state(policies({ aMayUseB80: true })));
    }
  });
});
