/**
 * Packet and flow builders for the observe tests: real header bytes, and a
 * FlowLookup over a small fixed world.
 */
import type { FlowLookup } from "../../src/observe/enrich.js";

const v4 = (a: string): number[] => a.split(".").map(Number);

function v6(a: string): number[] {
  const [head, tail] = a.includes("::") ? a.split("::") : [a, undefined];
  const h = (head ?? "").split(":").filter((x) => x !== "");
  const t = tail === undefined ? [] : tail.split(":").filter((x) => x !== "");
  const groups = [...h, ...new Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]);
}

export function tcpHeader(sport: number, dport: number, flags: number): number[] {
  return [
    sport >> 8,
    sport & 0xff,
    dport >> 8,
    dport & 0xff,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0x50,
    flags,
    0xff,
    0xff,
    0,
    0,
    0,
    0,
  ];
}
export function udpHeader(sport: number, dport: number): number[] {
  return [sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 8, 0, 0];
}
export function icmpHeader(type: number, code: number): number[] {
  return [type, code, 0, 0, 0, 1, 0, 1];
}

export function ipv4(
  src: string,
  dst: string,
  proto: number,
  l4: number[],
  opts: { fragOffset?: number } = {},
): Buffer {
  const total = 20 + l4.length;
  const off = opts.fragOffset ?? 0;
  return Buffer.from([
    0x45,
    0,
    total >> 8,
    total & 0xff,
    0,
    1,
    (off >> 8) & 0x1f,
    off & 0xff,
    64,
    proto,
    0,
    0,
    ...v4(src),
    ...v4(dst),
    ...l4,
  ]);
}

/** IPv6; `ext` = extension headers as [type, bytes] chain before the transport. */
export function ipv6(
  src: string,
  dst: string,
  proto: number,
  l4: number[],
  ext: [number, number[]][] = [],
): Buffer {
  const chain: number[] = [];
  const types = [...ext.map((e) => e[0]), proto];
  ext.forEach(([, bytes], i) => chain.push(types[i + 1] as number, ...bytes.slice(1)));
  const len = chain.length + l4.length;
  return Buffer.from([
    0x60,
    0,
    0,
    0,
    len >> 8,
    len & 0xff,
    types[0] as number,
    64,
    ...v6(src),
    ...v6(dst),
    ...chain,
    ...l4,
  ]);
}

/** The world of the enrich tests: endpoint 12 = default/deathstar (identity 256), 13 = default/tiefighter (257). */
export const LOOKUP: FlowLookup = {
  endpointById: (id) =>
    id === 12
      ? {
          name: "deathstar",
          namespace: "default",
          labels: ["k8s:app=deathstar", "k8s:org=empire"],
          identity: 256,
        }
      : id === 13
        ? {
            name: "tiefighter",
            namespace: "default",
            labels: ["k8s:app=tiefighter", "k8s:org=empire"],
            identity: 257,
          }
        : undefined,
  identityById: (id) =>
    id === 257
      ? { labels: ["k8s:app=tiefighter", "k8s:org=empire"] }
      : id === 2
        ? { labels: ["reserved:world"] }
        : id === 258
          ? { labels: ["k8s:app=xwing", "k8s:org=alliance"] }
          : undefined,
  ipIdentity: (ip) => (ip === "10.0.0.13" ? 257 : ip === "10.0.0.14" ? 258 : undefined),
  ruleById: (id) =>
    id === 7
      ? {
          policy: { kind: "CiliumNetworkPolicy", name: "rule1", namespace: "default" },
          path: "spec.ingressDeny[0]",
          matchType: "L3-L4",
          revision: 4,
        }
      : undefined,
  endpointByIp: (ip) =>
    ip === "10.0.0.13"
      ? {
          id: 13,
          name: "tiefighter",
          namespace: "default",
          labels: ["k8s:app=tiefighter", "k8s:org=empire"],
          identity: 257,
        }
      : ip === "10.0.0.12"
        ? {
            id: 12,
            name: "deathstar",
            namespace: "default",
            labels: ["k8s:app=deathstar", "k8s:org=empire"],
            identity: 256,
          }
        : undefined,
};
