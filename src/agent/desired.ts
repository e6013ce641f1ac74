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
import type { DatapathState, PolicySegment, ProxyTarget } from "../datapath/types.js";
import type { FlatSegment } from "../policy/mapstate.js";
import type { PolicyEngine } from "../policy/engine.js";
import { policyRefString, type RuleOrigin } from "../policy/types.js";

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

export function buildDatapathState(
  engine: PolicyEngine,
  endpoints: readonly LocalEndpoint[],
  opts: BuildOptions = { authAvailable: false },
  /** Filled with rule id -> the rule element it stands for (what flows name). */
  originsOut?: Map<number, RuleOrigin>,
): DatapathState {
  // Rule ids are assigned in sorted order, so the same policies give the same
  // ids in every agent run (a restarted agent must find nothing to change).
  const policies = endpoints.map((ep) => engine.endpointPolicy(ep.namespace, ep.name));
  const origins = new Map<string, RuleOrigin>();
  for (const pol of policies) {
    for (const dir of [pol.ingress, pol.egress]) {
      for (const seg of dir.mapState.flatten()) for (const o of seg.derivedFrom) origins.set(originKey(o), o);
    }
  }
  const rules = new Map<string, { id: number; text: string }>();
  for (const key of [...origins.keys()].sort()) {
    rules.set(key, { id: rules.size + 1, text: ruleText(origins.get(key) as RuleOrigin) });
  }
  if (originsOut) {
    originsOut.clear();
    for (const [key, r] of rules) originsOut.set(r.id, origins.get(key) as RuleOrigin);
  }
  const ruleId = (o: RuleOrigin | undefined): number => (o ? (rules.get(originKey(o))?.id ?? 0) : 0);
  const segment = (s: FlatSegment): PolicySegment => {
    const proxy = s.verdict === "allow" && s.redirect ? proxyFor(s, opts.proxy) : undefined;
    const needsMissing =
      s.verdict === "allow" && ((s.redirect && !proxy) || (s.authRequired && !opts.authAvailable));
    const origin = s.verdict !== "allow" ? s.derivedFrom.find((o) => o.deny) : s.derivedFrom[0];
    return {
      identity: s.identity,
      proto: s.proto,
      lo: s.lo,
      hi: s.hi,
      action: s.verdict === "deny" || needsMissing ? "deny" : proxy ? "redirect" : s.verdict,
      ...(proxy && !needsMissing ? { proxy } : {}),
      ruleId: ruleId(origin ?? s.derivedFrom[0]),
    };
  };
  const eps = endpoints.map((ep, i) => {
    const pol = policies[i] as (typeof policies)[number];
    return {
      id: ep.id,
      name: `${ep.namespace}/${ep.name}`,
      hostIfname: ep.hostIfname,
      ...(ep.ipv4 !== undefined ? { ipv4: ep.ipv4 } : {}),
      ...(ep.ipv6 !== undefined ? { ipv6: ep.ipv6 } : {}),
      identity: pol.endpoint.identity.id,
      ingress: {
        enforced: pol.ingress.enforced,
        ...(pol.ingress.auditDefault ? { auditDefault: true } : {}),
        segments: pol.ingress.mapState.flatten().map(segment),
      },
      egress: {
        enforced: pol.egress.enforced,
        ...(pol.egress.auditDefault ? { auditDefault: true } : {}),
        segments: pol.egress.mapState.flatten().map(segment),
      },
    };
  });
  const ipcache = [...engine.ipcache.entries()].map((e) => ({
    prefix: prefixString(e.prefix),
    identity: e.identity,
  }));
  // Dual stack: outside addresses are world-ipv4 / world-ipv6 (as the engine
  // decides), not plain world, which the kernel falls back to.
  if (engine.config.dualStack) {
    ipcache.push({ prefix: "0.0.0.0/0", identity: ID.worldIPv4 }, { prefix: "::/0", identity: ID.worldIPv6 });
  }
  ipcache.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
  eps.sort((a, b) => a.id - b.id);
  return {
    ipcache,
    endpoints: eps,
    rules: [...rules.values()],
    hostIdentity: ID.host,
    ...(opts.proxy ? { proxy: opts.proxy } : {}),
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
