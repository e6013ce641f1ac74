/**
 * Desired kernel state from the policy engine.
 *
 *   PolicyEngine (ipcache, per-endpoint MapState) + local endpoints (veth, addresses)
 *        --buildDatapathState-->  DatapathState  --Reconciler--> nftables
 *
 * Fail closed: a segment whose L7 rules the node's proxy cannot enforce
 * (no proxy running, two parsers claiming the port, an L7 parser on a
 * protocol the proxy does not take) and a segment that needs mutual
 * authentication (not in the datapath yet) are compiled as drops, never as
 * a plain allow (an L7 rule must never turn into "everything on this port").
 * DNS rules go to the DNS proxy (UDP and TCP); HTTP, Kafka and TLS rules to
 * the TCP L7 proxy.
 */
import { prefixString } from "../labels/cidr.js";
import { ID } from "../identity/reserved.js";
import type { DatapathEndpoint, DatapathState, PolicySegment, ProxyTarget } from "../datapath/types.js";
import type { FlatSegment } from "../policy/mapstate.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { DirectionPolicy } from "../policy/resolve.js";
import { policyRefString, type RuleOrigin } from "../policy/types.js";
import { RuleIds } from "./rule-ids.js";

export interface LocalEndpoint {
  readonly namespace: string;
  readonly name: string;
  readonly id: number;
  readonly hostIfname: string;
  readonly ipv4?: string;
  readonly ipv6?: string;
}

export interface BuildOptions {
  /** The node's proxy, when it runs: L7 segments redirect to it. */
  readonly proxy?: ProxyTarget;
  /** Mutual authentication can be checked in the datapath. */
  readonly authAvailable: boolean;
}

/** Rule texts used in NFLOG prefixes, at most 40 characters. */
export function ruleText(o: RuleOrigin): string {
  const t = `${policyRefString(o.policy)} ${o.path}`;
  return t.length <= 40 ? t : t.slice(0, 39) + "~";
}

/** One direction's segments, cached per computed policy (shared by endpoints of one identity). */
interface CachedDirection {
  readonly flat: readonly FlatSegment[];
  /** Rule element keys (originKey) each flat segment logs with, and the distinct ones. */
  readonly segmentKeys: readonly (string | undefined)[];
  readonly keys: readonly string[];
  readonly origins: ReadonlyMap<string, RuleOrigin>;
  /** The segments, valid while the rule ids of `keys` and `optsKey` are those of `at`. */
  built?: { readonly at: string; readonly optsKey: string; readonly segments: PolicySegment[] };
}

/**
 * Builds DatapathStates, remembering what it built: an endpoint whose computed
 * policy, addresses and options did not change gets the very same
 * DatapathEndpoint object as last time, so that the compiler and the planner
 * skip it by identity (the datapath recompiles only what changed).
 */
export class DesiredBuilder {
  private readonly ruleIds = new RuleIds();
  private readonly dirs = new WeakMap<DirectionPolicy, CachedDirection>();
  private readonly last = new Map<
    number,
    { key: string; ingress: PolicySegment[]; egress: PolicySegment[]; ep: DatapathEndpoint }
  >();

  build(
    engine: PolicyEngine,
    endpoints: readonly LocalEndpoint[],
    opts: BuildOptions = { authAvailable: false },
    /** Filled with rule id -> the rule element it stands for (what flows name). */
    originsOut?: Map<number, RuleOrigin>,
  ): DatapathState {
    const policies = endpoints.map((ep) => engine.endpointPolicy(ep.namespace, ep.name));
    const origins = new Map<string, RuleOrigin>();
    const cached = (pol: DirectionPolicy): CachedDirection => {
      let c = this.dirs.get(pol);
      if (!c) {
        const flat = pol.mapState.flatten();
        const segmentKeys = flat.map((s) => {
          const o =
            s.verdict !== "allow"
              ? (s.derivedFrom.find((d) => d.deny) ?? s.derivedFrom[0])
              : s.derivedFrom[0];
          return o ? originKey(o) : undefined;
        });
        const byKey = new Map<string, RuleOrigin>();
        for (const seg of flat) for (const o of seg.derivedFrom) byKey.set(originKey(o), o);
        c = { flat, segmentKeys, keys: [...byKey.keys()], origins: byKey };
        this.dirs.set(pol, c);
      }
      return c;
    };
    const dirsOf = policies.map((pol) => [cached(pol.ingress), cached(pol.egress)] as const);
    // Every rule element any segment derives from gets an id (flows name all of them).
    const visited = new Set<CachedDirection>();
    for (const pair of dirsOf) {
      for (const c of pair) {
        if (visited.has(c)) continue;
        visited.add(c);
        for (const [k, o] of c.origins) if (!origins.has(k)) origins.set(k, o);
      }
    }
    const ids = this.ruleIds.assign(new Set(origins.keys()));
    const rules: { id: number; text: string }[] = [];
    for (const [key, o] of origins) rules.push({ id: ids.get(key) ?? 0, text: ruleText(o) });
    rules.sort((a, b) => a.id - b.id);
    if (originsOut) {
      originsOut.clear();
      for (const [key, o] of origins) originsOut.set(ids.get(key) ?? 0, o);
    }
    const optsKey = `${opts.proxy ? JSON.stringify(opts.proxy) : "-"}|${opts.authAvailable}`;
    const segmentsOf = (c: CachedDirection): PolicySegment[] => {
      const at = c.keys.map((k) => ids.get(k) ?? 0).join(",");
      if (c.built && c.built.at === at && c.built.optsKey === optsKey) return c.built.segments;
      const segments = c.flat.map((s, j) => toSegment(s, opts, c.segmentKeys[j], ids));
      c.built = { at, optsKey, segments };
      return segments;
    };
    const seen = new Set<number>();
    const eps: DatapathEndpoint[] = endpoints.map((ep, i) => {
      const pol = policies[i] as (typeof policies)[number];
      const [ci, ce] = dirsOf[i] as readonly [CachedDirection, CachedDirection];
      const ingress = segmentsOf(ci);
      const egress = segmentsOf(ce);
      const key = [
        ep.namespace,
        ep.name,
        ep.hostIfname,
        ep.ipv4 ?? "",
        ep.ipv6 ?? "",
        pol.endpoint.identity.id,
        pol.ingress.enforced,
        pol.ingress.auditDefault ?? false,
        pol.egress.enforced,
        pol.egress.auditDefault ?? false,
      ].join("|");
      seen.add(ep.id);
      const prev = this.last.get(ep.id);
      if (prev && prev.key === key && prev.ingress === ingress && prev.egress === egress) return prev.ep;
      // A recomputed policy that came out the same (e.g. a re-applied file) is no change either.
      if (
        prev &&
        prev.key === key &&
        sameSegments(prev.ingress, ingress) &&
        sameSegments(prev.egress, egress)
      ) {
        this.last.set(ep.id, { ...prev, ingress, egress });
        return prev.ep;
      }
      const out: DatapathEndpoint = {
        id: ep.id,
        name: `${ep.namespace}/${ep.name}`,
        hostIfname: ep.hostIfname,
        ...(ep.ipv4 !== undefined ? { ipv4: ep.ipv4 } : {}),
        ...(ep.ipv6 !== undefined ? { ipv6: ep.ipv6 } : {}),
        identity: pol.endpoint.identity.id,
        ingress: {
          enforced: pol.ingress.enforced,
          ...(pol.ingress.auditDefault ? { auditDefault: true } : {}),
          segments: ingress,
        },
        egress: {
          enforced: pol.egress.enforced,
          ...(pol.egress.auditDefault ? { auditDefault: true } : {}),
          segments: egress,
        },
      };
      this.last.set(ep.id, { key, ingress, egress, ep: out });
      return out;
    });
    for (const id of [...this.last.keys()]) if (!seen.has(id)) this.last.delete(id);
    // Exact addresses go as the engine's host table (journal of changes); prefixes are few.
    const ipcache = [...engine.ipcache.prefixEntries()].map((e) => ({
      prefix: prefixString(e.prefix),
      identity: e.identity,
    }));
    // Dual stack: outside addresses are world-ipv4 / world-ipv6 (as the engine
    // decides), not plain world, which the kernel falls back to.
    if (engine.config.dualStack) {
      ipcache.push(
        { prefix: "0.0.0.0/0", identity: ID.worldIPv4 },
        { prefix: "::/0", identity: ID.worldIPv6 },
      );
    }
    ipcache.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
    eps.sort((a, b) => a.id - b.id);
    return {
      ipcache,
      hosts: engine.ipcache.hosts,
      endpoints: eps,
      rules,
      hostIdentity: ID.host,
      ...(opts.proxy ? { proxy: opts.proxy } : {}),
    };
  }
}

function sameSegments(a: readonly PolicySegment[], b: readonly PolicySegment[]): boolean {
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
      x.ruleId !== y.ruleId
    )
      return false;
  }
  return true;
}

/** A one-off build (tests, `what if` questions): no cache carried over. */
export function buildDatapathState(
  engine: PolicyEngine,
  endpoints: readonly LocalEndpoint[],
  opts: BuildOptions = { authAvailable: false },
  originsOut?: Map<number, RuleOrigin>,
): DatapathState {
  return new DesiredBuilder().build(engine, endpoints, opts, originsOut);
}

function toSegment(
  s: FlatSegment,
  opts: BuildOptions,
  key: string | undefined,
  ids: ReadonlyMap<string, number>,
): PolicySegment {
  const proxy = s.verdict === "allow" && s.redirect ? proxyFor(s, opts.proxy) : undefined;
  const needsMissing =
    s.verdict === "allow" && ((s.redirect && !proxy) || (s.authRequired && !opts.authAvailable));
  return {
    identity: s.identity,
    proto: s.proto,
    lo: s.lo,
    hi: s.hi,
    action: s.verdict === "deny" || needsMissing ? "deny" : proxy ? "redirect" : s.verdict,
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
