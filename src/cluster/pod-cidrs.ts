/**
 * Which pod CIDRs each node owns, as every node computes it from the store:
 * a CIDR counts for node N when N's registry record lists it, N's claim
 * (`cluster/podcidrs/<N>`) holds it, and no other node's claim that overlaps
 * it was last written before N's (keys.ts: the smallest modRevision wins, so a
 * claim a node widens later counts from then: it cannot take an address range
 * from nodes that claimed it meanwhile).
 *
 *   nodes/<N> {podCidrs}  +  podcidrs/<N> {ipv4, ipv6}  -->  owned: N -> [prefix]
 *
 * Routes go only to owned CIDRs, and a node's ipcache entries count only
 * inside them: one node cannot draw another's pods to itself through the
 * store (the etcd roles let it write only its own keys).
 */
import { containsPrefix, parsePrefix, type Prefix } from "../labels/cidr.js";
import { CLUSTER_KEYS, type PodCidrClaimV1 } from "./keys.js";
import type { MirrorEntry } from "./mirror.js";
import type { PeerRecord } from "./node-record.js";

interface Claim {
  readonly node: string;
  readonly prefix: Prefix;
  /** The revision of the claim's last put. */
  readonly revision: number;
}

const overlaps = (a: Prefix, b: Prefix): boolean => containsPrefix(a, b) || containsPrefix(b, a);

/** The claims in `claims` (podcidrs/ entries), bad ones reported through `bad`. */
function readClaims(claims: ReadonlyMap<string, MirrorEntry>, bad: (why: string) => void): Claim[] {
  const out: Claim[] = [];
  for (const [k, e] of claims) {
    const node = k.slice(CLUSTER_KEYS.podCidrs.length);
    let c: PodCidrClaimV1;
    try {
      c = JSON.parse(e.value) as PodCidrClaimV1;
    } catch {
      bad(`${k}: not JSON`);
      continue;
    }
    for (const text of [c?.ipv4, c?.ipv6]) {
      if (text === undefined) continue;
      const p = typeof text === "string" ? parsePrefix(text) : undefined;
      if (p) out.push({ node, prefix: p, revision: e.modRevision });
      else bad(`${k}: ${JSON.stringify(text)} is not a prefix`);
    }
  }
  return out;
}

/** node -> the pod CIDRs it owns (see the top of this file). */
export function ownedPodCidrs(
  records: ReadonlyMap<string, PeerRecord>,
  claims: ReadonlyMap<string, MirrorEntry>,
  bad: (why: string) => void,
): Map<string, Prefix[]> {
  const all = readClaims(claims, bad);
  const won = all.filter(
    (c) =>
      !all.some(
        (o) =>
          o.node !== c.node &&
          overlaps(o.prefix, c.prefix) &&
          (o.revision < c.revision || (o.revision === c.revision && o.node < c.node)),
      ),
  );
  const out = new Map<string, Prefix[]>();
  for (const [name, r] of records) {
    const mine = won.filter((c) => c.node === name).map((c) => c.prefix);
    const owned = r.podCidrs.filter((p) => mine.some((c) => containsPrefix(c, p)));
    for (const p of r.podCidrs) {
      if (!owned.includes(p))
        bad(`node ${name}: pod CIDR not held by its claim (or claimed first by another node)`);
    }
    out.set(name, owned);
  }
  return out;
}
