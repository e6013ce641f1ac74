/**
 * The kernel segments of one direction of a computed policy, for DesiredBuilder
 * (desired.ts): flattened once per computed policy (shared by every endpoint
 * holding it) and turned into PolicySegments once per set of rule ids.
 *
 *   DirectionPolicy --flatten, once--> CachedDirection (flat segments, the rule elements they log)
 *     --segmentsOf(rule ids, options)--> PolicySegment[] (cached while the ids and options stay)
 *
 * Fail closed: a segment whose L7 rules the node's proxy cannot enforce, or
 * that needs mutual authentication, is a drop (see desired.ts).
 */
import type { PolicySegment, ProxyTarget } from "../datapath/types.js";
import type { FlatSegment } from "../policy/mapstate.js";
import type { DirectionPolicy } from "../policy/resolve.js";
import { policyRefString, type RuleOrigin } from "../policy/types.js";

export interface BuildOptions {
  /** The node's proxy, when it runs: L7 segments redirect to it. */
  readonly proxy?: ProxyTarget;
  /** Mutual authentication can be checked in the datapath. */
  readonly authAvailable: boolean;
  /** The node's VXLAN port (cluster mode with --tunnel vxlan): the host firewall never judges it. */
  readonly tunnelPort?: number;
}

/**
 * The options as text: segments built under other options are rebuilt. The
 * live proxy workers' ports are left out: segments name only which proxy
 * takes them, and a worker's restart must not rebuild every endpoint.
 */
export function optionsKey(opts: BuildOptions): string {
  const proxy = opts.proxy && { ...opts.proxy, l7Ports: undefined, dnsPorts: undefined };
  return `${proxy ? JSON.stringify(proxy) : "-"}|${opts.authAvailable}|${opts.tunnelPort ?? "-"}`;
}

/** A direction's flat segments and the rule elements they derive from. */
export function directionOf(pol: DirectionPolicy): CachedDirection {
  const flat = pol.mapState.flatten();
  const segmentKeys = flat.map((s) => {
    const o =
      s.verdict !== "allow" ? (s.derivedFrom.find((d) => d.deny) ?? s.derivedFrom[0]) : s.derivedFrom[0];
    return o ? originKey(o) : undefined;
  });
  const byKey = new Map<string, RuleOrigin>();
  for (const seg of flat) for (const o of seg.derivedFrom) byKey.set(originKey(o), o);
  return { flat, segmentKeys, keys: [...byKey.keys()], origins: byKey };
}

/** Segments that require authentication name the endpoint's identity (their side of the pair). */
export function withAuthSelf(segments: PolicySegment[], self: number): PolicySegment[] {
  if (!segments.some((s) => s.action === "auth")) return segments;
  return segments.map((s) => (s.action === "auth" ? { ...s, authSelf: self } : s));
}

/** The direction's segments under these rule ids and options (the same array while they stay). */
export function segmentsOf(
  c: CachedDirection,
  ids: ReadonlyMap<string, number>,
  opts: BuildOptions,
  optsKey: string,
): PolicySegment[] {
  const at = c.keys.map((k) => ids.get(k) ?? 0).join(",");
  if (c.built && c.built.at === at && c.built.optsKey === optsKey) return c.built.segments;
  const segments = c.flat.map((s, j) => toSegment(s, opts, c.segmentKeys[j], ids));
  c.built = { at, optsKey, segments };
  return segments;
}

/** Rule texts used in NFLOG prefixes, at most 40 characters. */
export function ruleText(o: RuleOrigin): string {
  const t = `${policyRefString(o.policy)} ${o.path}`;
  return t.length <= 40 ? t : t.slice(0, 39) + "~";
}

/** One direction's segments, cached per computed policy (shared by endpoints of one identity). */
export interface CachedDirection {
  readonly flat: readonly FlatSegment[];
  /** Rule element keys (originKey) each flat segment logs with, and the distinct ones. */
  readonly segmentKeys: readonly (string | undefined)[];
  readonly keys: readonly string[];
  readonly origins: ReadonlyMap<string, RuleOrigin>;
  /** The segments, valid while the rule ids of `keys` and `optsKey` are those of `at`. */
  built?: { readonly at: string; readonly optsKey: string; readonly segments: PolicySegment[] };
}

export function sameSegments(a: readonly PolicySegment[], b: readonly PolicySegment[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as PolicySegment;
    const y = b[i] as PolicySegment;
    if (
      x.identity !== y.identity ||
      x.proto !== y.proto ||
      x.lo !== y.lo ||
      x.hi !== y.hi ||
      x.action !== y.action ||
      x.proxy !== y.proxy ||
      x.ruleId !== y.ruleId ||
      x.authSelf !== y.authSelf
    )
      return false;
  }
  return true;
}

function toSegment(
  s: FlatSegment,
  opts: BuildOptions,
  key: string | undefined,
  ids: ReadonlyMap<string, number>,
): PolicySegment {
  const proxy = s.verdict === "allow" && s.redirect ? proxyFor(s, opts.proxy) : undefined;
  // Authentication and an L7 redirect on one segment: not built (the ct mark cannot carry both
  // the pair and the redirect through the egress chain), so fail closed.
  const needsMissing =
    s.verdict === "allow" &&
    ((s.redirect && !proxy) || (s.authRequired && (!opts.authAvailable || s.redirect)));
  const auth = s.verdict === "allow" && s.authRequired && !needsMissing;
  return {
    identity: s.identity,
    proto: s.proto,
    lo: s.lo,
    hi: s.hi,
    action: s.verdict === "deny" || needsMissing ? "deny" : proxy ? "redirect" : auth ? "auth" : s.verdict,
    ...(proxy && !needsMissing ? { proxy } : {}),
    ruleId: key === undefined ? 0 : (ids.get(key) ?? 0),
  };
}

const TCP = 6;
const UDP = 17;

/** Which proxy takes a redirected segment; undefined = none can (fail closed). */
function proxyFor(s: FlatSegment, proxy: ProxyTarget | undefined): "l7" | "dns" | undefined {
  if (!proxy || s.parser === undefined || s.parser === "conflict") return undefined;
  if (s.parser === "dns") return s.proto === TCP || s.proto === UDP ? "dns" : undefined;
  return s.proto === TCP ? "l7" : undefined;
}

function originKey(o: RuleOrigin): string {
  return `${o.policy.kind}/${policyRefString(o.policy)}/${o.path}`;
}
