/**
 * Local pairs authenticated before their first packet (issue 12 item 3), as Cilium's auth map is
 * filled ahead: when both endpoints are on this node and a rule of this node's policy requires
 * authentication between their identities, the agent runs the (in-process) handshake at policy
 * time, so the pair's first SYN finds its kernel entry and is never queued.
 *
 *   applied policy (DatapathState) + local identities --localPairsToPrefill--> [{src, dst}]
 *     only named peers (a rule of any identity names no pair), only identities >= 256, only pairs
 *     not already authenticated, at most MAX_PER_PASS per pass
 *   --> AuthManager.authenticatePair (the same handshake and kernel write as a held first packet)
 *
 * Pairs with an end on another node are still authenticated on their first packet: the handshake
 * needs the peer node's agent, and most such pairs never talk. A failed prefill is only logged:
 * the pair's first packet is then held and judged as always (fail closed).
 */
import type { DatapathState } from "../datapath/types.js";
import type { AuthManager } from "./manager.js";
import type { Pair } from "./pairs.js";
import { pairKey } from "./pairs.js";

/** Handshakes one pass starts at most (the rest follow at the next pass). */
export const MAX_PER_PASS = 64;
const FIRST_CLUSTER_IDENTITY = 256;

/** (source, destination) identity pairs of local endpoints that this node's rules require to authenticate. */
export function localPairsToPrefill(
  state: DatapathState,
  local: ReadonlySet<number>,
  have: (src: number, dst: number) => boolean,
): { src: number; dst: number }[] {
  const out = new Map<string, { src: number; dst: number }>();
  const add = (src: number, dst: number): void => {
    if (src < FIRST_CLUSTER_IDENTITY || dst < FIRST_CLUSTER_IDENTITY) return;
    if (!local.has(src) || !local.has(dst) || have(src, dst)) return;
    out.set(`${src}.${dst}`, { src, dst });
  };
  for (const ep of state.endpoints) {
    for (const s of ep.ingress.segments)
      if (s.action === "auth" && s.identity !== 0) add(s.identity, ep.identity);
    for (const s of ep.egress.segments)
      if (s.action === "auth" && s.identity !== 0) add(ep.identity, s.identity);
  }
  return [...out.values()].sort((a, b) => a.src - b.src || a.dst - b.dst).slice(0, MAX_PER_PASS);
}

/** One pass: authenticates the local pairs the policy requires that have no entry yet (one at a time). */
export async function prefillLocalPairs(m: AuthManager): Promise<number> {
  const state = m.p.state();
  if (!state) return 0;
  const self = m.nodes.self;
  const nets = m.nodes.netsOf(self);
  const pairOf = (src: number, dst: number): Pair => ({ src, dst, srcNode: self, dstNode: self, srcNets: nets, dstNets: nets, expiresMs: 0, chains: [], serials: new Map(), srcIps: new Set(), dstIps: new Set() }); // prettier-ignore
  const skip = (src: number, dst: number): boolean =>
    m.revoked.has(src) || m.revoked.has(dst) || m.pairs.has(pairKey(pairOf(src, dst)));
  let done = 0;
  for (const { src, dst } of localPairsToPrefill(state, m.p.localIdentities(), skip)) {
    try {
      if (await m.authenticatePair(pairOf(src, dst))) done++;
    } catch (e) {
      m.p.logger.debug({ source: src, destination: dst, err: (e as Error).message }, "a local pair did not authenticate ahead of its first packet"); // prettier-ignore
    }
  }
  return done;
}
