/**
 * "What would this change break?" — the connections a cluster actually made,
 * judged again under the policy set as it would be after a change.
 *
 *   observed connections (FlowQuery + how often + when last) ──dedupe by query──┐
 *   engine now ─────────────────────────── decide ──┐                           │
 *   engine.fork() + the change (upsert | delete) ─ decide ──> verdicts differ? ─┴─> ImpactChange,
 *                                                                                   grouped by source,
 *                                                                                   destination, port, L7
 * Each change names the rule responsible: for a connection the change would
 * deny, the deny rule that now matches or, under default deny, the rules that
 * allowed it before (what the change removed or narrowed) and whether the change
 * put the endpoint under policy; for one it would allow, the rules that then
 * allow it. Pure: two engines and a list in, a report out.
 */
import { originText, queryPort } from "./decide.js";
import type { PolicyEngine, ResolvedPeer } from "./engine.js";
import type { Decision, DirectionDecision, FlowQuery } from "./query.js";

/** One connection seen, as often as it was seen. */
export interface ObservedConnection {
  readonly query: FlowQuery;
  readonly flows: number;
  /** RFC 3339 time of the last flow of it. */
  readonly lastSeen?: string;
}

export interface ImpactChange {
  readonly from: string;
  readonly to: string;
  /** "TCP/80", "UDP/53", "ICMP type 8". */
  readonly port: string;
  /** "GET /api/v1" (HTTP), "kafka produce topic", "dns example.com", "tls sni": when the flow was L7. */
  readonly l7?: string;
  readonly before: "allow" | "deny";
  readonly after: "allow" | "deny";
  /** How it would be denied after the change: drop, http-403, ... */
  readonly how?: string;
  /** Flows seen of this connection. */
  readonly flows: number;
  readonly lastSeen?: string;
  /** The rule(s) responsible, as `kind namespace/name spec.ingress[0]`, and what they did. */
  readonly responsible: readonly string[];
}

export interface ImpactReport {
  /** Distinct connections judged (after grouping equal queries). */
  readonly connections: number;
  readonly flows: number;
  readonly unchanged: number;
  readonly allowedToDenied: readonly ImpactChange[];
  readonly deniedToAllowed: readonly ImpactChange[];
  /** Connections that could not be judged (a pod since deleted, ...), by reason. */
  readonly skipped: readonly { readonly reason: string; readonly connections: number }[];
}

/** A stable key of a query (equal connections are judged once). */
export function queryKey(q: FlowQuery): string {
  return JSON.stringify([q.from, q.to, q.proto, q.port, q.icmpType, q.http, q.dnsQuery, q.kafka, q.tls]);
}

export function impactOf(
  now: PolicyEngine,
  after: PolicyEngine,
  observed: readonly ObservedConnection[],
): ImpactReport {
  const merged = new Map<string, { query: FlowQuery; flows: number; lastSeen?: string }>();
  for (const o of observed) {
    const k = queryKey(o.query);
    const m = merged.get(k);
    if (!m)
      merged.set(k, { query: o.query, flows: o.flows, ...(o.lastSeen ? { lastSeen: o.lastSeen } : {}) });
    else {
      m.flows += o.flows;
      if (o.lastSeen && (!m.lastSeen || o.lastSeen > m.lastSeen)) m.lastSeen = o.lastSeen;
    }
  }
  const toDeny: ImpactChange[] = [];
  const toAllow: ImpactChange[] = [];
  const skipped = new Map<string, number>();
  let unchanged = 0;
  let flows = 0;
  for (const c of merged.values()) {
    flows += c.flows;
    let before: Decision;
    let later: Decision;
    let src: ResolvedPeer;
    let dst: ResolvedPeer;
    try {
      before = now.decide(c.query);
      later = after.decide(c.query);
      src = now.resolvePeer(c.query.from);
      dst = now.resolvePeer(c.query.to);
    } catch (e) {
      const reason = (e as Error).message.replace(/^Cannot [^:]*: /, "");
      skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
      continue;
    }
    if (before.verdict === later.verdict) {
      unchanged++;
      continue;
    }
    const l7 = l7Text(c.query);
    const change: ImpactChange = {
      from: peerName(src),
      to: peerName(dst),
      port: portText(c.query),
      ...(l7 !== undefined ? { l7 } : {}),
      before: before.verdict,
      after: later.verdict,
      ...(later.verdict === "deny" ? { how: later.how ?? "drop" } : {}),
      flows: c.flows,
      ...(c.lastSeen ? { lastSeen: c.lastSeen } : {}),
      responsible: later.verdict === "deny" ? whyDenied(before, later) : whyAllowed(before, later),
    };
    (later.verdict === "deny" ? toDeny : toAllow).push(change);
  }
  const order = (a: ImpactChange, b: ImpactChange): number =>
    b.flows - a.flows ||
    a.from.localeCompare(b.from) ||
    a.to.localeCompare(b.to) ||
    a.port.localeCompare(b.port);
  return {
    connections: merged.size,
    flows,
    unchanged,
    allowedToDenied: toDeny.sort(order),
    deniedToAllowed: toAllow.sort(order),
    skipped: [...skipped].map(([reason, connections]) => ({ reason, connections })),
  };
}

const sides = (d: Decision): DirectionDecision[] => [d.egress, d.ingress];

function whyDenied(before: Decision, after: Decision): string[] {
  const out: string[] = [];
  for (const s of sides(after)) {
    if (s.verdict !== "deny") continue;
    const where = `${s.direction}${s.endpoint ? ` of ${s.endpoint}` : ""}`;
    if (s.reason === "policy-denied") {
      for (const o of s.decidedBy) out.push(`${originText(o)}: denies (${where})`);
      continue;
    }
    const was = before[s.direction];
    if (!was.enforced && s.enforced) {
      out.push(`${where}: the change puts it under policy, and no rule allows this (default deny)`);
      continue;
    }
    for (const o of was.decidedBy)
      out.push(`${originText(o)}: allowed it before (${where}); removed or narrowed`);
    if (s.reason === "auth-required") out.push(`${where}: now requires mutual authentication`);
    else if (s.reason === "l7-denied") out.push(`${where}: the L7 rules no longer allow this request`);
    else if (was.decidedBy.length === 0)
      out.push(`${where}: no rule allows this after the change (default deny)`);
  }
  return out;
}

function whyAllowed(before: Decision, after: Decision): string[] {
  const out: string[] = [];
  for (const s of sides(after)) {
    const was = before[s.direction];
    if (was.verdict === "allow") continue;
    if (!s.enforced) out.push(`${s.direction}: no longer under policy`);
    for (const o of s.decidedBy) out.push(`${originText(o)}: allows (${s.direction})`);
    if (was.reason === "policy-denied")
      for (const o of was.decidedBy) out.push(`${originText(o)}: denied it before; removed or narrowed`);
  }
  return out;
}

function peerName(p: ResolvedPeer): string {
  return p.endpoint ? p.endpoint.key : p.isHost ? "host" : (p.ip ?? `identity ${p.identity.id}`);
}

function portText(q: FlowQuery): string {
  return q.proto.startsWith("ICMP") ? `${q.proto} type ${queryPort(q)}` : `${q.proto}/${queryPort(q)}`;
}

function l7Text(q: FlowQuery): string | undefined {
  if (q.http) return `${q.http.method} ${q.http.path}`;
  if (q.kafka) return `kafka ${q.kafka.apiKey}${q.kafka.topic ? ` ${q.kafka.topic}` : ""}`;
  if (q.dnsQuery) return `dns ${q.dnsQuery}`;
  if (q.tls) return `tls ${q.tls.sni}`;
  return undefined;
}
