/**
 * Which authenticated pairs must go (revocation, issue 12 item 4). Pure: the pairs and the facts
 * of the moment in, the pairs to remove with the reason out; the manager removes their kernel
 * entries and cuts their connections (cut.ts).
 *
 *   pairs + {live identities, revoked, policy state, bundle, time} --judgePairs--> [{pair, why}]
 *
 * A pair goes when an identity of it no longer exists (no endpoint of it on any node), is revoked,
 * its SVID expired, the policy of this node's end no longer requires authentication between the
 * two, or a certificate the peer presented no longer validates against the trust bundle (a root
 * dropped from it).
 */
import type { DatapathState, DirectionPolicy } from "../datapath/types.js";
import { validateX509Svid } from "../spiffe/validate.js";
import type { SvidValidationCache } from "../spiffe/validate-cache.js";

export interface JudgedPair {
  readonly src: number;
  readonly dst: number;
  readonly expiresMs: number;
  /** Chains the peers presented (empty for a pair adopted from the kernel after a restart). */
  readonly chains: readonly (readonly Buffer[])[];
}

export interface Facts {
  readonly live: ReadonlySet<number>;
  readonly revoked: ReadonlySet<number>;
  /** The policy the kernel holds now; undefined = not known yet (nothing is judged on it). */
  readonly state: DatapathState | undefined;
  readonly bundle: readonly Buffer[];
  readonly trustDomain: string;
  readonly now: number;
  readonly cache?: SvidValidationCache;
}

const needs = (pol: DirectionPolicy, peer: number): boolean =>
  pol.segments.some((s) => s.action === "auth" && (s.identity === 0 || s.identity === peer));

/** Whether a rule of an endpoint of this node requires authentication of src -> dst. */
export function authRequired(state: DatapathState, src: number, dst: number): boolean {
  return state.endpoints.some(
    (ep) => (ep.identity === dst && needs(ep.ingress, src)) || (ep.identity === src && needs(ep.egress, dst)),
  );
}

export function judgePairs<P extends JudgedPair>(pairs: Iterable<P>, f: Facts): { pair: P; why: string }[] {
  const out: { pair: P; why: string }[] = [];
  for (const p of pairs) {
    const why = judge(p, f);
    if (why !== undefined) out.push({ pair: p, why });
  }
  return out;
}

function judge(p: JudgedPair, f: Facts): string | undefined {
  if (p.expiresMs <= f.now) return "an SVID of the pair expired";
  for (const id of [p.src, p.dst]) {
    if (f.revoked.has(id)) return `identity ${id} is revoked`;
    if (!f.live.has(id)) return `identity ${id} no longer exists (no endpoint of it on any node)`;
  }
  if (f.state && !authRequired(f.state, p.src, p.dst)) return "the policy no longer requires authentication";
  for (const chain of p.chains) {
    try {
      const o = { trustDomain: f.trustDomain, now: f.now };
      if (f.cache) f.cache.validate(chain, f.bundle, o);
      else validateX509Svid([...chain], f.bundle, o);
    } catch (e) {
      return `a certificate of the pair is no longer trusted: ${(e as Error).message}`;
    }
  }
  return undefined;
}
