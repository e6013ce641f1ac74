/**
 * Answers one FlowQuery from computed policy, and explains the answer.
 *
 *   FlowQuery -> source's egress MapState lookup  --+
 *             -> destination's ingress MapState lookup --> both allow? -> L7 (proxy) -> Decision
 *
 * Both directions are independent checks (Cilium §8.2): a connection passes
 * only if the source may send and the destination may receive. A side that is
 * not a local endpoint (world, another node) has no policy here.
 */
import type { Identity } from "../identity/allocator.js";
import { RESERVED_NAMES } from "../identity/reserved.js";
import { labelString } from "../labels/label.js";
import { prefixString } from "../labels/cidr.js";
import { afterActions, l7Verdict } from "./decide-l7.js";
import { actionText, type HeaderAction } from "./l7/http.js";
import type { LookupResult, MapStateEntry } from "./mapstate.js";
import { matchType } from "./match-type.js";
import { peerSelects } from "./peer.js";
import type { EndpointRecord, PolicyEngine, ResolvedPeer } from "./engine.js";
import type { Decision, DenyHow, DirectionDecision, FlowQuery } from "./query.js";
import type { DirectionPolicy } from "./resolve.js";
import {
  PROTO_NUMBER,
  policyRefString,
  type Direction,
  type PeerSelector,
  type RuleElement,
  type RuleOrigin,
} from "./types.js";

interface Side {
  readonly decision: DirectionDecision;
  readonly how?: DenyHow;
  readonly lookup?: LookupResult;
  readonly policy?: DirectionPolicy;
  /** HTTP mismatch actions this side's rules took (the next side judges their result). */
  readonly actions?: readonly HeaderAction[];
}

export function protoNumber(p: FlowQuery["proto"]): number {
  return p === "ANY" ? 0 : PROTO_NUMBER[p];
}

export function queryPort(q: FlowQuery): number {
  if (q.proto === "ICMP" || q.proto === "ICMPv6") return q.icmpType ?? 8;
  return q.port ?? (q.dnsQuery !== undefined ? 53 : 0);
}

export function decideFlow(engine: PolicyEngine, q: FlowQuery): Decision {
  return evaluate(engine, q).decision;
}

function evaluate(
  engine: PolicyEngine,
  q: FlowQuery,
): { decision: Decision; src: ResolvedPeer; dst: ResolvedPeer; egress: Side; ingress: Side } {
  const src = engine.resolvePeer(q.from);
  const dst = engine.resolvePeer(q.to);
  const proto = protoNumber(q.proto);
  const port = queryPort(q);
  const egressPolicy = src.endpoint
    ? engine.endpointPolicy(src.endpoint.spec.namespace, src.endpoint.spec.name).egress
    : src.isHost
      ? engine.hostPolicy().egress
      : undefined;
  const ingressPolicy = dst.endpoint
    ? engine.endpointPolicy(dst.endpoint.spec.namespace, dst.endpoint.spec.name).ingress
    : dst.isHost
      ? engine.hostPolicy().ingress
      : undefined;
  const egress = side(engine, "egress", egressPolicy, src.endpoint, dst.identity.id, proto, port, q);
  // The server's ingress rules judge the request as the client's egress actions left it (one proxy hop).
  const ingress = side(
    engine,
    "ingress",
    ingressPolicy,
    dst.endpoint,
    src.identity.id,
    proto,
    port,
    afterActions(q, egress),
  );
  const denied =
    egress.decision.verdict === "deny" ? egress : ingress.decision.verdict === "deny" ? ingress : undefined;
  const decision: Decision = {
    verdict: denied ? "deny" : "allow",
    ...(denied?.how ? { how: denied.how } : {}),
    egress: egress.decision,
    ingress: ingress.decision,
    srcIdentity: src.identity.id,
    dstIdentity: dst.identity.id,
  };
  return { decision, src, dst, egress, ingress };
}

function side(
  engine: PolicyEngine,
  direction: Direction,
  policy: DirectionPolicy | undefined,
  endpoint: EndpointRecord | undefined,
  remote: number,
  proto: number,
  port: number,
  q: FlowQuery,
): Side {
  const base = {
    direction,
    ...(endpoint ? { endpoint: endpoint.key } : {}),
    remoteIdentity: remote,
  };
  if (!policy) {
    return { decision: { ...base, enforced: false, verdict: "allow", decidedBy: [], matchType: "none" } };
  }
  const enforced = policy.enforced;
  const r = policy.mapState.lookup(remote, proto, port);
  if (r.verdict === "deny") {
    return {
      policy,
      lookup: r,
      how: "drop",
      decision: {
        ...base,
        enforced,
        verdict: "deny",
        reason: "policy-denied",
        decidedBy: origins(r.entries),
        matchType: matchType(r.entries),
      },
    };
  }
  if (r.verdict === "audit") {
    return {
      policy,
      lookup: r,
      decision: {
        ...base,
        enforced,
        verdict: "allow",
        decidedBy: [],
        matchType: matchType(r.entries),
        audit: { reason: "policy-denied", decidedBy: origins(r.entries) },
      },
    };
  }
  if (r.verdict === "none") {
    if (!enforced && policy.auditDefault) {
      return {
        policy,
        lookup: r,
        decision: {
          ...base,
          enforced,
          verdict: "allow",
          decidedBy: [],
          matchType: "none",
          audit: { reason: "default-deny", decidedBy: [] },
        },
      };
    }
    const verdict = enforced ? "deny" : "allow";
    return {
      policy,
      lookup: r,
      ...(enforced ? { how: "drop" as const } : {}),
      decision: {
        ...base,
        enforced,
        verdict,
        ...(enforced ? { reason: "default-deny" as const } : {}),
        decidedBy: [],
        matchType: "none",
      },
    };
  }
  const allowed: DirectionDecision = {
    ...base,
    enforced,
    verdict: "allow",
    decidedBy: origins(r.entries),
    matchType: matchType(r.entries),
    ...(r.auth ? { auth: r.auth } : {}),
  };
  if (r.auth && engine.config.meshAuth && (r.auth === "test-always-fail" || q.auth !== true)) {
    return {
      policy,
      lookup: r,
      how: "auth-required",
      decision: { ...allowed, verdict: "deny", reason: "auth-required" },
    };
  }
  if (!r.l7) return { policy, lookup: r, decision: allowed };
  const l7 = l7Verdict(r.l7, q, enforced);
  const actions = l7.actions && l7.actions.length > 0 ? { headerActions: l7.actions.map(actionText) } : {};
  const decision: DirectionDecision = {
    ...allowed,
    l7: { parser: r.l7.spec.parser, verdict: l7.allowed ? "allow" : "deny", ...actions },
    ...(l7.allowed ? {} : { verdict: "deny" as const, reason: "l7-denied" as const }),
  };
  if (!l7.allowed) return { policy, lookup: r, decision, how: l7.how };
  return l7.actions ? { policy, lookup: r, decision, actions: l7.actions } : { policy, lookup: r, decision };
}

function origins(entries: readonly MapStateEntry[]): RuleOrigin[] {
  const seen = new Map<string, RuleOrigin>();
  for (const e of entries) for (const o of e.derivedFrom) seen.set(originText(o), o);
  return [...seen.values()];
}

export function originText(o: RuleOrigin): string {
  return `${policyRefString(o.policy)} ${o.path}`;
}

// ---- explanations ---------------------------------------------------------

export function explainFlow(engine: PolicyEngine, q: FlowQuery): { decision: Decision; steps: string[] } {
  const { decision, src, dst, egress, ingress } = evaluate(engine, q);
  const proto = protoNumber(q.proto);
  const port = queryPort(q);
  const steps: string[] = [];
  steps.push(`Source:      ${peerText(src)}`);
  steps.push(`Destination: ${peerText(dst)}`);
  steps.push(
    `Connection:  ${q.proto}${q.proto.startsWith("ICMP") ? ` type ${port}` : `/${port}`}${l7Text(q)}`,
  );
  for (const [s, local, remote] of [
    [egress, src, dst],
    [ingress, dst, src],
  ] as const) {
    const dir = s.decision.direction;
    steps.push("");
    if (!s.policy) {
      steps.push(
        `${cap(dir)}: ${local.endpoint || local.isHost ? "" : "the source is not a local endpoint; "}no ${dir} policy applies here`,
      );
      continue;
    }
    const who = local.endpoint ? local.endpoint.key : "host";
    steps.push(`${cap(dir)} of ${who}:`);
    if (s.policy.rules.length === 0) steps.push(`  no rule selects ${who}`);
    for (const r of s.policy.rules)
      steps.push(`  selected by ${r.policy.kind} ${policyRefString(r.policy)} (${r.path})`);
    steps.push(
      `  ${dir} enforced: ${s.policy.enforced ? "yes" : s.policy.auditDefault ? "audit only" : "no"}${enforcedWhy(engine, s.policy, dir)}`,
    );
    const remoteIdent = remote.identity;
    for (const r of s.policy.rules) {
      const elements = dir === "ingress" ? [...r.ingress, ...r.ingressDeny] : [...r.egress, ...r.egressDeny];
      for (const el of elements)
        steps.push("  " + elementText(engine, el, remoteIdent, proto, port, s.policy));
    }
    steps.push(`  => ${verdictText(s)}`);
  }
  steps.push("");
  steps.push(
    decision.verdict === "allow"
      ? "Final verdict: ALLOWED"
      : `Final verdict: DENIED (${decision.how ?? "drop"})`,
  );
  return { decision, steps };
}

function enforcedWhy(engine: PolicyEngine, p: DirectionPolicy, dir: Direction): string {
  const mode = engine.config.policyEnforcementMode;
  if (mode !== "default") return ` (policyEnforcementMode ${mode})`;
  const r = p.rules.find((x) => x.defaultDeny[dir]);
  if (r) return ` (${policyRefString(r.policy)} ${r.path} has ${dir} rules)`;
  return p.rules.length ? ` (no selecting rule enables default deny for ${dir})` : "";
}

function elementText(
  engine: PolicyEngine,
  el: RuleElement,
  remote: Identity,
  proto: number,
  port: number,
  policy: DirectionPolicy,
): string {
  const head = `${policyRefString(el.origin.policy)} ${el.origin.path} (${el.origin.deny ? "deny" : "allow"}):`;
  const hit = policy.mapState
    .entriesFor(remote.id)
    .concat(policy.mapState.entriesFor(0))
    .some(
      (e) =>
        e.derivedFrom.includes(el.origin) &&
        (e.proto === 0 || e.proto === proto) &&
        e.lo <= port &&
        port <= e.hi,
    );
  const ctx = { cluster: engine.config.cluster, services: new Map() };
  const peerOk = el.peers.some((p) => p.kind === "all" || peerSelects(p, remote, ctx));
  const peers = el.peers.length === 0 ? "no peer (selects nobody)" : el.peers.map(peerTextOf).join(" or ");
  const ports = portsText(el);
  if (hit) return `${head} MATCHES — peer ${peers} selects identity ${remote.id}; ${ports}`;
  if (!peerOk) return `${head} no match — peer ${peers} does not select identity ${remote.id}`;
  return `${head} no match — ${ports} does not cover ${protoName(proto)}/${port}`;
}

function verdictText(s: Side): string {
  const d = s.decision;
  if (d.audit) {
    return d.audit.reason === "default-deny"
      ? "AUDIT: would be denied by default deny (an audit-mode policy enables it); let through and recorded"
      : `AUDIT: would be denied by ${d.audit.decidedBy.map(originText).join(", ")} (audit mode); let through and recorded`;
  }
  if (d.verdict === "allow") {
    const by = d.decidedBy.map(originText).join(", ");
    const acts = d.l7?.headerActions?.length ? ` (header mismatch: ${d.l7.headerActions.join("; ")})` : "";
    const extra = d.l7 ? `, L7 ${d.l7.parser} allowed the request${acts}` : "";
    return d.enforced || by ? `ALLOWED${by ? ` by ${by}` : ""}${extra}` : "ALLOWED (not enforced)";
  }
  switch (d.reason) {
    case "policy-denied":
      return `DENIED by ${d.decidedBy.map(originText).join(", ")} (deny rules win over allows)`;
    case "default-deny":
      return "DENIED: default deny, no rule allows this peer on this port";
    case "auth-required":
      return `DENIED: mutual authentication required by ${d.decidedBy.map(originText).join(", ")} and none is established`;
    case "l7-denied":
      return `DENIED by the L7 ${d.l7?.parser ?? ""} rules of ${d.decidedBy.map(originText).join(", ")} (${s.how ?? ""})`;
    default:
      return "DENIED";
  }
}

function peerText(p: ResolvedPeer): string {
  const id = p.identity;
  const labels = [...id.labels].map(labelString).join(", ");
  const name = p.endpoint ? p.endpoint.key : p.isHost ? "host" : (p.ip ?? RESERVED_NAMES.get(id.id) ?? "?");
  const what = RESERVED_NAMES.get(id.id) ?? (id.prefix ? `cidr ${prefixString(id.prefix)}` : "");
  return `${name}${p.ip && p.endpoint ? ` (${p.ip})` : ""} identity ${id.id}${what ? ` ${what}` : ""} [${labels}]`;
}

function peerTextOf(p: PeerSelector): string {
  switch (p.kind) {
    case "all":
      return "any peer";
    case "endpoints":
      return `endpoints{${p.selector.toString()}}`;
    case "entity":
      return `entity ${p.entity}`;
    case "cidr":
      return `cidr ${prefixString(p.prefix)}${p.except.length ? ` except ${p.except.map(prefixString).join(",")}` : ""}`;
    case "fqdn":
      return p.matchName !== undefined ? `fqdn ${p.matchName}` : `fqdn pattern ${p.matchPattern ?? ""}`;
    case "service":
      return `service ${p.namespace}/${p.name ?? `{${p.selector?.toString() ?? ""}}`}`;
    case "nodes":
      return `nodes{${p.selector.toString()}}`;
  }
}

function portsText(el: RuleElement): string {
  if (el.icmps) return `icmp types ${el.icmps.map((f) => `${f.family}/${f.type}`).join(",")}`;
  if (!el.ports) return "all ports and protocols";
  const list = el.ports.flatMap((pr) =>
    pr.ports.map((p) => {
      const port =
        p.name ?? (p.port === 0 ? "*" : p.endPort > p.port ? `${p.port}-${p.endPort}` : String(p.port));
      return `${port}/${p.protocol}${pr.l7 ? ` +${pr.l7.kind}` : ""}`;
    }),
  );
  return `ports ${list.join(",")}`;
}

function protoName(n: number): string {
  return Object.entries(PROTO_NUMBER).find(([, v]) => v === n)?.[0] ?? (n === 0 ? "ANY" : String(n));
}

function l7Text(q: FlowQuery): string {
  if (q.http) return ` HTTP ${q.http.method} ${q.http.path}`;
  if (q.dnsQuery) return ` DNS query ${q.dnsQuery}`;
  if (q.kafka) return ` Kafka ${q.kafka.apiKey}${q.kafka.topic ? ` topic ${q.kafka.topic}` : ""}`;
  if (q.tls) return ` TLS SNI ${q.tls.sni}`;
  return "";
}

function cap(s: string): string {
  return s[0]?.toUpperCase() + s.slice(1);
}
