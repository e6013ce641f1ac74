/**
 * The `dns:` answers of a scenario query on a scratch node. The offline
 * session applies them before the query (engine.observeDns: the addresses
 * get FQDN identities for every endpoint of the node, whoever asked); the
 * datapath does the same before sending the query, in one of two ways:
 *
 *   asker's policy sends a DNS query for the name through the DNS proxy to some resolver
 *     -> the asker's probe asks that resolver (a probe answering the scenario's addresses);
 *        the proxy lets the answer out only once the agent enforces it       ("via")
 *   otherwise (no DNS rule for the asker, or no endpoint asked)
 *     -> Agent.observeDnsAnswer: the answer the node's proxy would not have seen,
 *        handed to the agent as the scenario states it                       ("direct")
 *
 * Resolvers tried, in order: the destinations of the scenario's dnsQuery
 * queries, then its endpoints. The check is the offline engine's decision
 * for `asker -> resolver UDP/53 dnsQuery <name>`: allowed, and handed to
 * the DNS proxy.
 */
import type { Decision, FlowQuery, PeerRef } from "../query.js";
import { type PlanContext, type Side, outsideProblem } from "./datapath-plan.js";
import { findEndpoint, parsePeer } from "./peer.js";
import type { ScenarioQuery } from "./types.js";

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
 * How each `dns:` answer of `q` reaches the agent. `decide` is the offline
 * engine as it stands before the query (its answers not yet applied).
 */
export function planDnsFeeds(
  q: ScenarioQuery,
  ctx: PlanContext,
  decide: (f: FlowQuery) => Decision,
  candidates: readonly Candidate[] = resolverCandidates(ctx),
): DnsFeed[] {
  const fromPeer = parsePeer(q.from);
  return (q.dns ?? []).map((obs) => {
    const base = {
      name: obs.name,
      ips: obs.ips,
      ...(obs.ttl !== undefined ? { ttl: obs.ttl } : {}),
    };
    const byText = obs.by ?? (!("error" in fromPeer) && fromPeer.kind === "endpoint" ? q.from : undefined);
    const byPeer = byText === undefined ? undefined : parsePeer(byText);
    const asker =
      byPeer !== undefined && !("error" in byPeer) && byPeer.kind === "endpoint"
        ? findEndpoint(ctx.scenario.endpoints, byPeer)
        : undefined;
    if (asker === undefined || "error" in asker) {
      return { ...base, direct: "no endpoint of the node asked (the query's source is not an endpoint)" };
    }
    const by = `${asker.namespace}/${asker.name}`;
    const from: Side = { kind: "endpoint", key: by };
    const askerRef: PeerRef = { kind: "endpoint", name: asker.name, namespace: asker.namespace };
    for (const c of candidates) {
      if (c.text === by) continue;
      const d = decide({ from: askerRef, to: c.ref, proto: "UDP", port: 53, dnsQuery: obs.name });
      if (dnsProxied(d)) return { ...base, by, via: { from, to: c.side, address: c.address } };
    }
    return {
      ...base,
      by,
      direct: `${by}'s policy sends no DNS query for ${obs.name} through the DNS proxy to a resolver of this scenario`,
    };
  });
}

/** One line for a query's results: which path an answer took. */
export function feedText(f: DnsFeed): string {
  const what = `dns: ${f.name} -> ${f.ips.join(",")}`;
  if (f.via) {
    const to = f.via.to.kind === "endpoint" ? f.via.to.key : f.via.address;
    return `${what} asked by ${f.by ?? "?"} through the DNS proxy (resolver ${to})`;
  }
  return `${what} given to the agent directly: ${f.direct ?? ""}`;
}
