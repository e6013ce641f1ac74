/**
 * The `dns:` answers of a scenario query on a scratch node. A query's `dns:`
 * is the complete set of answers the node has seen before it; the offline
 * session (ScenarioSession.dnsChange) says what that changes: answers the
 * node's DNS proxy saw are learned (FQDN identities for every endpoint of the
 * node, whoever asked), answers it did not see teach nothing, answers no
 * longer listed are forgotten. The datapath does the same before the query:
 *
 *   learned, and the asker's policy sends a DNS query for the name through the DNS proxy
 *   to a resolver the scratch node has
 *     -> the asker's probe asks that resolver (a probe answering the scenario's addresses);
 *        the proxy lets the answer out only once the agent enforces it       ("via")
 *   learned, but no resolver of the scenario can be asked on the scratch node
 *     -> Agent.observeDnsAnswer: what the node's proxy would have seen       ("direct")
 *   not seen by the proxy (no endpoint asked, or the asker's DNS is not intercepted)
 *     -> nothing: the agent never hears of it, as on a real node            ("unseen")
 *   forgotten
 *     -> Agent.forgetDnsAnswer, as if its TTL ran out                        ("forget")
 *
 * Resolvers tried, in order: the destinations of the scenario's dnsQuery
 * queries, then its endpoints. The check is the offline engine's decision
 * for `asker -> resolver UDP/53 dnsQuery <name>`: allowed, and handed to
 * the DNS proxy.
 */
import type { Decision, FlowQuery, PeerRef } from "../policy/query.js";
import { type PlanContext, type Side, outsideProblem } from "./datapath-plan.js";
import { findEndpoint, parsePeer } from "../policy/scenario/peer.js";
import type { DnsChange } from "../policy/scenario/session.js";

export interface DnsFeed {
  readonly name: string;
  readonly ips: readonly string[];
  readonly ttl?: number;
  /** The endpoint that asked (namespace/name), when one did. */
  readonly by?: string;
  /** Through the DNS proxy: `from` asks `to` (at `address`, UDP/53), which answers `ips`. */
  readonly via?: { readonly from: Side; readonly to: Side; readonly address: string };
  /** Why the answer is handed to the agent directly. */
  readonly direct?: string;
  /** Why the answer is not given to the agent at all (the DNS proxy would not see it). */
  readonly unseen?: string;
  /** The answer is forgotten (the query's `dns:` no longer lists it). */
  readonly forget?: true;
}

interface Candidate {
  readonly side: Side;
  readonly ref: PeerRef;
  readonly address: string;
  readonly text: string;
}

/** The resolvers answers may be asked from: dnsQuery destinations, then endpoints (IPv4). */
export function resolverCandidates(ctx: PlanContext): Candidate[] {
  const out: Candidate[] = [];
  const seen = new Set<string>();
  const add = (c: Candidate): void => {
    if (!seen.has(c.text)) out.push(c);
    seen.add(c.text);
  };
  for (const q of ctx.scenario.queries) {
    if (q.dnsQuery === undefined) continue;
    const p = parsePeer(q.to);
    if ("error" in p) continue;
    if ((p.kind === "world" || p.kind === "cidr") && p.ip.includes(".") && !outsideProblem(p.ip, ctx)) {
      add({ side: { kind: "outside", ip: p.ip }, ref: { kind: "ip", ip: p.ip }, address: p.ip, text: p.ip });
    }
  }
  for (const e of ctx.scenario.endpoints) {
    const v4 = e.ips.find((ip) => ip.includes("."));
    const key = `${e.namespace}/${e.name}`;
    if (v4 === undefined || e.kind === "health") continue;
    add({
      side: { kind: "endpoint", key },
      ref: { kind: "endpoint", name: e.name, namespace: e.namespace },
      address: v4,
      text: key,
    });
  }
  // Endpoints named by dnsQuery destinations go first.
  const firsts = new Set(
    ctx.scenario.queries.flatMap((q) => {
      if (q.dnsQuery === undefined) return [];
      const p = parsePeer(q.to);
      if ("error" in p || p.kind !== "endpoint") return [];
      const e = findEndpoint(ctx.scenario.endpoints, p);
      return "error" in e ? [] : [`${e.namespace}/${e.name}`];
    }),
  );
  return [...out.filter((c) => firsts.has(c.text)), ...out.filter((c) => !firsts.has(c.text))];
}

const dnsProxied = (d: Decision): boolean =>
  d.verdict === "allow" && [d.egress, d.ingress].some((x) => x.l7?.parser === "dns");

/**
 * How a query's DNS change (ScenarioSession.dnsChange after preparing it)
 * reaches the agent. `decide` is the offline engine.
 */
export function planDnsFeeds(
  change: DnsChange,
  ctx: PlanContext,
  decide: (f: FlowQuery) => Decision,
  candidates: readonly Candidate[] = resolverCandidates(ctx),
): DnsFeed[] {
  const forgets: DnsFeed[] = change.forgotten.map((f) => ({ name: f.name, ips: [f.ip], forget: true }));
  const unseen: DnsFeed[] = change.unseen.map((u) => ({ name: u.name, ips: u.ips, unseen: u.why }));
  const learned = change.learned.map((a): DnsFeed => {
    const base = { name: a.name, ips: a.ips, ...(a.ttl !== undefined ? { ttl: a.ttl } : {}) };
    const by = `${a.by.namespace}/${a.by.name}`;
    const from: Side = { kind: "endpoint", key: by };
    const askerRef: PeerRef = { kind: "endpoint", name: a.by.name, namespace: a.by.namespace };
    for (const c of candidates) {
      if (c.text === by) continue;
      const d = decide({ from: askerRef, to: c.ref, proto: "UDP", port: 53, dnsQuery: a.name });
      if (dnsProxied(d)) return { ...base, by, via: { from, to: c.side, address: c.address } };
    }
    return {
      ...base,
      by,
      direct: `${by}'s lookup of ${a.name} goes through the DNS proxy, but to no resolver the scratch node has`,
    };
  });
  return [...forgets, ...unseen, ...learned];
}

/** One line for a query's results: which path an answer took. */
export function feedText(f: DnsFeed): string {
  const what = `dns: ${f.name} -> ${f.ips.join(",")}`;
  if (f.forget) return `${what} forgotten (no longer in the query's dns)`;
  if (f.unseen !== undefined) return `${what} not learned: ${f.unseen}`;
  if (f.via) {
    const to = f.via.to.kind === "endpoint" ? f.via.to.key : f.via.address;
    return `${what} asked by ${f.by ?? "?"} through the DNS proxy (resolver ${to})`;
  }
  return `${what} given to the agent directly: ${f.direct ?? ""}`;
}
