/**
 * Where a scenario's endpoints run in `policy test --datapath --nodes N`:
 * one node each, and every node's pod CIDRs, decided without touching the kernel.
 *
 *   scenario endpoints (file order, their addresses) --placeEndpoints(N)-->
 *     node index per endpoint + NodeCidrs per node | {skip: reason}
 *
 * A node's pods are inside its pod CIDR, and pod CIDRs of nodes do not
 * overlap (Cilium's model, and the cluster's: an ipcache entry outside the
 * publisher's claimed pod CIDRs is ignored, src/cluster/pod-cidrs.ts). The
 * scenario's addresses are the user's and are never renumbered, so the
 * endpoints go "alternately in file order" as far as their addresses allow:
 * among the placements whose groups fit in disjoint prefixes, the one that
 * agrees most with the alternation (endpoint i on node i mod N), then the one
 * with the most endpoint-to-endpoint queries crossing nodes, then the first.
 * Scenarios whose endpoints share one small block (10.0.1.10 and 10.0.1.11)
 * cannot be split: they are skipped with the reason, never run on one node
 * instead. A node's CIDR is the largest prefix that holds its endpoints and
 * no other node's (at least /24 and /64 when the endpoints allow), so IPAM
 * has room for an endpoint without an address.
 */
import { addrString, familyWidth, mask, parseAddr, prefixString, type Prefix } from "../labels/cidr.js";
import { findEndpoint, parsePeer } from "../policy/scenario/peer.js";
import type { Scenario } from "../policy/scenario/types.js";
import type { NodeCidrs } from "./datapath-plan.js";

export interface Placement {
  /** Per node: its pod CIDRs and gateways (node i is the i-th). */
  readonly nodes: readonly NodeCidrs[];
  /** `namespace/name` -> node index. */
  readonly nodeOf: ReadonlyMap<string, number>;
}

/** Assignments tried exhaustively up to this many (N^endpoints); beyond, contiguous runs by address. */
const MAX_TRIES = 4096;

const key = (e: { namespace: string; name: string }): string => `${e.namespace}/${e.name}`;

/** Length of the common prefix of two addresses of one family. */
function common(a: bigint, b: bigint, width: number): number {
  let x = a ^ b;
  let bits = width;
  while (x > 0n) {
    x >>= 1n;
    bits--;
  }
  return bits;
}

/**
 * The prefix of one group in one family: holds all of `mine`, none of
 * `others`, at most `cap` bits long when the addresses allow; undefined when none.
 */
export function groupPrefix(
  mine: readonly bigint[],
  others: readonly bigint[],
  family: 4 | 6,
  cap: number,
): Prefix | undefined {
  const width = familyWidth(family);
  const first = mine[0];
  if (first === undefined) return undefined;
  const cover = Math.min(...mine.map((v) => common(first, v, width)));
  const excl = Math.max(0, ...others.map((v) => common(first, v, width) + 1));
  if (excl > cover) return undefined;
  const bits = Math.max(excl, Math.min(cover, cap));
  // Room for the network, the gateway, one endpoint and the last address.
  if (bits > width - 2) return undefined;
  const addr = first & mask(family, bits);
  const last = addr + (1n << BigInt(width - bits)) - 1n;
  if (mine.some((v) => v === addr || v === addr + 1n || v === last)) return undefined;
  return { family, addr, bits };
}

const overlaps = (a: Prefix, b: Prefix): boolean => {
  if (a.family !== b.family) return false;
  const m = mask(a.family, Math.min(a.bits, b.bits));
  return (a.addr & m) === (b.addr & m);
};

/** A block for a node none of whose endpoints has an address of `family` (IPAM picks one). */
function spareBlock(family: 4 | 6, i: number): Prefix {
  return family === 4
    ? { family, addr: (198n << 24n) | (18n << 16n) | (BigInt(i) << 8n), bits: 24 } // 198.18.i.0/24
    : { family, addr: (0xfd00n << 112n) | (0xfff0n << 96n) | (BigInt(i) << 64n), bits: 64 };
}

/** Per node, its prefix in `family`; undefined when the groups do not fit in disjoint prefixes. */
function familyPrefixes(groups: readonly bigint[][], family: 4 | 6): Prefix[] | undefined {
  const cap = family === 4 ? 24 : 64;
  const out: Prefix[] = [];
  for (const [i, mine] of groups.entries()) {
    const others = groups.flatMap((g, j) => (j === i ? [] : g));
    const p = mine.length > 0 ? groupPrefix(mine, others, family, cap) : spareBlock(family, i);
    if (!p) return undefined;
    out.push(p);
  }
  for (const [i, p] of out.entries())
    if (out.some((q, j) => j !== i && overlaps(p, q)) || groups.flat().some((v) => spareHit(p, v, groups[i])))
      return undefined;
  return out;
}

/** A spare block must not hold another node's address. */
function spareHit(p: Prefix, v: bigint, mine: readonly bigint[] | undefined): boolean {
  if (mine === undefined || mine.length > 0) return false;
  return (v & mask(p.family, p.bits)) === p.addr;
}

function cidrsOf(p4: Prefix, p6: Prefix | undefined): NodeCidrs {
  const out = { podCidr4: prefixString(p4), gateway4: addrString(4, p4.addr + 1n) };
  return p6 ? { ...out, podCidr6: prefixString(p6), gateway6: addrString(6, p6.addr + 1n) } : out;
}

/** The nodes' CIDRs for one assignment (node index per endpoint), or undefined. */
function tryAssignment(s: Scenario, assign: readonly number[], n: number): NodeCidrs[] | undefined {
  const families: (4 | 6)[] = s.config.dualStack === true ? [4, 6] : [4];
  const per = new Map<4 | 6, Prefix[]>();
  for (const f of families) {
    const groups: bigint[][] = Array.from({ length: n }, () => []);
    s.endpoints.forEach((e, i) => {
      for (const ip of e.ips) {
        const a = parseAddr(ip);
        if (a?.family === f) groups[assign[i] ?? 0]?.push(a.value);
      }
    });
    const ps = familyPrefixes(groups, f);
    if (!ps) return undefined;
    per.set(f, ps);
  }
  const v4 = per.get(4) ?? [];
  return v4.map((p, i) => cidrsOf(p, per.get(6)?.[i]));
}

/** Queries from one endpoint to another that cross nodes under `assign`. */
function crossing(s: Scenario, assign: readonly number[]): number {
  const idx = new Map(s.endpoints.map((e, i) => [key(e), i]));
  const nodeOf = (t: string): number | undefined => {
    const p = parsePeer(t);
    if ("error" in p || p.kind !== "endpoint") return undefined;
    const e = findEndpoint(s.endpoints, p);
    return "error" in e ? undefined : assign[idx.get(key(e)) ?? -1];
  };
  return s.queries.filter((q) => {
    const a = nodeOf(q.from);
    const b = nodeOf(q.to);
    return a !== undefined && b !== undefined && a !== b;
  }).length;
}

function* assignments(count: number, n: number): Generator<number[]> {
  const a = new Array<number>(count).fill(0);
  for (;;) {
    yield [...a];
    let i = count - 1;
    while (i >= 0 && a[i] === n - 1) a[i--] = 0;
    if (i < 0) return;
    a[i] = (a[i] ?? 0) + 1;
  }
}

/** Contiguous runs of endpoints sorted by IPv4 address, for scenarios too large to search. */
function runsByAddress(s: Scenario, n: number): number[] {
  const v4 = (i: number): bigint =>
    parseAddr(s.endpoints[i]?.ips.find((ip) => parseAddr(ip)?.family === 4) ?? "")?.value ?? 0n;
  const order = s.endpoints.map((_, i) => i).sort((x, y) => (v4(x) < v4(y) ? -1 : v4(x) > v4(y) ? 1 : 0));
  const out = new Array<number>(s.endpoints.length).fill(0);
  order.forEach((e, rank) => (out[e] = Math.floor((rank * n) / order.length)));
  return out;
}

/**
 * Places the scenario's endpoints on `nodes` nodes (fewer when it has fewer
 * endpoints: a node with no endpoint proves nothing); see the file comment.
 */
export function placeEndpoints(s: Scenario, nodes: number): Placement | { skip: string } {
  const count = s.endpoints.length;
  const n = Math.max(1, Math.min(nodes, count));
  const candidates = n ** count <= MAX_TRIES ? assignments(count, n) : [runsByAddress(s, n)];
  let best: { score: [number, number]; assign: number[]; cidrs: NodeCidrs[] } | undefined;
  for (const assign of candidates) {
    if (new Set(assign).size < n) continue; // every node holds an endpoint
    const cidrs = tryAssignment(s, assign, n);
    if (!cidrs) continue;
    const score: [number, number] = [assign.filter((x, i) => x === i % n).length, crossing(s, assign)];
    if (!best || score[0] > best.score[0] || (score[0] === best.score[0] && score[1] > best.score[1]))
      best = { score, assign, cidrs };
  }
  if (!best) {
    const addrs = s.endpoints.flatMap((e) => e.ips).join(", ");
    return {
      skip: `cannot place the endpoints on ${n} nodes: their addresses (${addrs}) do not split into ${n} disjoint pod CIDRs of at least 4 addresses (a node's pods are inside its own pod CIDR)`,
    };
  }
  const chosen = best;
  return {
    nodes: chosen.cidrs,
    nodeOf: new Map(s.endpoints.map((e, i) => [key(e), chosen.assign[i] ?? 0])),
  };
}
