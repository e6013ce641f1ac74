// The mTLS tunnel's receiving side names the source pod (no root): the peer's `forwarded: for=`
// claim (hostile input: only a plain address inside that peer's pod CIDRs), the agent's check of
// the claim against the certificate's identity (origins.ts), the IPC message carrying it, and the
// flow of a delivery from the pod gateway naming the source pod, its identity and node.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { forwardedFor } from "../../src/encryption/mtls/server.js";
import { TunnelOrigins } from "../../src/encryption/mtls/origins.js";
import { fromTunnel } from "../../src/encryption/mtls/wire.js";
import { parsePrefix, type Prefix } from "../../src/labels/cidr.js";
import { FlowEnricher } from "../../src/observe/enrich.js";
import type { NflogEvent } from "../../src/observe/nflog-msg.js";
import { ipv4, LOOKUP, tcpHeader } from "../observe/fixtures.js";

const PEER = ["10.200.0.0/24"];

describe("forwarded: for= from a peer's CONNECT (untrusted)", () => {
  const cases: [string, unknown, string | undefined][] = [
    ["a pod address of the peer", "for=10.200.0.5", "10.200.0.5"],
    ["any case, surrounding space", " FOR=10.200.0.5 ", "10.200.0.5"],
    ["absent", undefined, undefined],
    ["a list (several hops)", "for=10.200.0.5, for=10.200.0.6", undefined],
    ["another parameter", "by=10.200.0.5", undefined],
    ["an address of another node's pods", "for=10.200.1.5", undefined],
    ["an address outside the cluster", "for=8.8.8.8", undefined],
    ["a name", "for=evil.example", undefined],
    ["an obfuscated identifier", 'for="_hidden"', undefined],
    ["an IPv6 address outside the peer's CIDRs", 'for="[fd00::5]"', undefined],
    ["a port after the address", "for=10.200.0.5:4711", undefined],
    ["an address out of range", "for=10.200.0.300", undefined],
    ["a very long value", `for=10.200.0.5${" ".repeat(200)}`, undefined],
    ["an array (repeated header)", ["for=10.200.0.5", "for=10.200.0.6"], undefined],
    ["a NUL byte", "for=10.200.0.5\0", undefined],
  ];
  for (const [name, v, want] of cases)
    test(`${name}: ${want ?? "no claim"}`, () => assert.equal(forwardedFor(v, PEER), want));
  test("IPv6 in RFC 7239's quoted brackets, inside the peer's CIDRs", () =>
    assert.equal(forwardedFor('for="[fd00:200::5]"', ["fd00:200::/64"]), "fd00:200::5"));
});

describe("the agent's record of where carried connections come from", () => {
  const local: Prefix[] = [parsePrefix("10.200.1.0/24") as Prefix];
  const ipcache = new Map([
    ["10.200.0.5", 300],
    ["10.200.1.7", 301],
  ]);
  const make = (now = (): number => 1000): TunnelOrigins =>
    new TunnelOrigins({ identityOf: (ip) => ipcache.get(ip), local, max: 3, ttlMs: 60_000, now });
  const o = { port: 40001, destination: "10.200.1.7", destinationPort: 8080, source: "10.200.0.5", identity: 300 }; // prettier-ignore

  test("a claim whose address holds the certificate's identity is kept and found by port and destination", () => {
    const t = make();
    assert.equal(t.note(o), true);
    assert.deepEqual(t.find("10.200.1.7", 8080, 40001), { ip: "10.200.0.5", identity: 300 });
    assert.equal(t.find("10.200.1.7", 8080, 40002), undefined, "another local port");
    assert.equal(t.find("10.200.1.8", 8080, 40001), undefined, "another destination");
  });
  const refused: [string, Partial<typeof o>][] = [
    ["an address with another identity", { identity: 301 }],
    ["an address the ipcache does not know", { source: "10.200.0.99" }],
    ["one of this node's own pods", { source: "10.200.1.7", identity: 301 }],
    ["a reserved identity", { source: "10.200.0.5", identity: 6 }],
    ["no address", { source: "pod-a" }],
  ];
  for (const [name, change] of refused)
    test(`${name} is refused, and replaces an older record of the port`, () => {
      const t = make();
      t.note(o);
      assert.equal(t.note({ ...o, ...change }), false);
      assert.equal(t.find("10.200.1.7", 8080, 40001), undefined);
      assert.equal(t.refused, 1);
    });
  test("bounded: the oldest records go first; old records expire", () => {
    let now = 1000;
    const t = make(() => now);
    for (let p = 1; p <= 5; p++) t.note({ ...o, port: p });
    assert.equal(t.size, 3);
    assert.equal(t.find("10.200.1.7", 8080, 1), undefined);
    assert.ok(t.find("10.200.1.7", 8080, 5));
    now += 60_001;
    assert.equal(t.find("10.200.1.7", 8080, 5), undefined);
  });
});

describe("the origin message from the tunnel process (untrusted)", () => {
  const good = { type: "origin?", id: 4, port: 40001, destination: "10.200.1.7", destinationPort: 8080, source: "10.200.0.5", identity: 300 }; // prettier-ignore
  test("a well-formed one is read (extra fields dropped)", () => {
    assert.deepEqual(fromTunnel({ ...good, extra: "x" }), good);
  });
  const bad: [string, object][] = [
    ["port 0", { port: 0 }],
    ["port 70000", { port: 70000 }],
    ["a destination port as text", { destinationPort: "8080" }],
    ["a source of 1 MB", { source: "1".repeat(1 << 20) }],
    ["a negative identity", { identity: -1 }],
    ["no id", { id: undefined }],
  ];
  for (const [name, change] of bad)
    test(`${name} is dropped`, () => assert.equal(fromTunnel({ ...good, ...change }), undefined));
});

describe("flows of the tunnel's deliveries name the source pod", () => {
  // deathstar (endpoint 12, 10.0.0.12) receives from the pod gateway 10.0.0.1, port 40001, marked
  // with xwing's identity 258; the tunnel said xwing's pod 10.9.0.14 on node n1 opened it.
  const syn = ipv4("10.0.0.1", "10.0.0.12", 6, tcpHeader(40001, 80, 0x02));
  const ev = (mark: number): NflogEvent => ({ prefix: "mbr:a:e12:in:r7", packet: syn, timestampMs: 0, mark });
  const enricher = (origin = { ip: "10.9.0.14", identity: 258 }): FlowEnricher =>
    new FlowEnricher({
      nodeName: "n2",
      lookup: {
        ...LOOKUP,
        nodeOfIp: (ip) => (ip.startsWith("10.9.") ? "n1" : undefined),
        encryptedPeer: (ip, tcp) => tcp && ip.startsWith("10.9."),
        tunnelOrigin: (dst, dport, sport) => (dst === "10.0.0.12" && dport === 80 && sport === 40001 ? origin : undefined), // prettier-ignore
      },
    });
  test("IP.source is the source pod, the source its identity, labels and node; encrypted", () => {
    const f = enricher().enrich(ev(258));
    assert.equal(f?.IP?.source, "10.9.0.14");
    assert.equal(f?.IP?.destination, "10.0.0.12");
    assert.equal(f?.IP?.encrypted, true);
    assert.deepEqual(f?.source, { identity: 258, labels: ["k8s:app=xwing", "k8s:org=alliance"], node_name: "n1" }); // prettier-ignore
    assert.equal(f?.destination?.pod_name, "deathstar");
  });
  test("a record for another identity than the mark's is not used (the gateway stays the source)", () => {
    const f = enricher({ ip: "10.9.0.14", identity: 300 }).enrich(ev(258));
    assert.equal(f?.IP?.source, "10.0.0.1");
    assert.equal(f?.source?.identity, 258, "the identity is still the mark's");
  });
  test("an unmarked packet from the gateway is not a delivery", () => {
    assert.equal(enricher().enrich(ev(0))?.IP?.source, "10.0.0.1");
  });
});
