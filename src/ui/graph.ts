/**
 * The service map's model: flows folded into a graph of workloads and edges.
 *
 *   Flow ──node of each side──> GraphNode (namespace/workload | world | fqdn:NAME | host | cidr)
 *        ──(from, to, protocol, port)──> GraphEdge: counts by verdict, L7 summary, deciding policies,
 *                                         the last few flows (for the drill-down)
 *
 * A workload is a pod's `app` label (Kubernetes' `app.kubernetes.io/name`
 * first), else its name: replicas fold into one node, as Hubble UI shows
 * them. Replies are not connections and are left out. Bounded: at most
 * MAX_NODES nodes and MAX_EDGES edges (further ones are counted, not kept),
 * and LAST_FLOWS flows per edge. Pure: flows in, a graph out.
 */
import type { Flow, PolicyRefJSON } from "../observe/flow.js";

export const MAX_NODES = 5000;
export const MAX_EDGES = 20000;
export const LAST_FLOWS = 20;

export interface GraphNode {
  readonly id: string;
  readonly label: string;
  /** Kubernetes namespace; "" for world, FQDNs, the host and addresses. */
  readonly namespace: string;
  readonly kind: "workload" | "world" | "fqdn" | "host" | "address";
}

export interface GraphEdge {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  /** "TCP/80", "UDP/53", "ICMPv4". */
  readonly port: string;
  forwarded: number;
  dropped: number;
  audit: number;
  /** "HTTP GET /api (200)", "DNS example.com", ...: the latest L7 request seen. */
  l7?: string;
  /** Policies named by the flows: `kind namespace/name` with what they did. */
  readonly policies: Set<string>;
  /** The latest flows, newest last. */
  readonly flows: Flow[];
  lastSeen: string;
}

export class ServiceGraph {
  readonly nodes = new Map<string, GraphNode>();
  readonly edges = new Map<string, GraphEdge>();
  /** Flows that could not be drawn (no side, or over the bounds). */
  dropped = 0;
  /** Bumped on every change: the page asks for the graph again when it moves. */
  revision = 0;

  add(f: Flow): void {
    if (f.is_reply === true) return;
    const from = this.node(f, "source");
    const to = this.node(f, "destination");
    if (!from || !to) {
      this.dropped++;
      return;
    }
    const port = portOf(f);
    const id = `${from.id}|${to.id}|${port}`;
    let e = this.edges.get(id);
    if (!e) {
      if (this.edges.size >= MAX_EDGES) {
        this.dropped++;
        return;
      }
      e = {
        id,
        from: from.id,
        to: to.id,
        port,
        forwarded: 0,
        dropped: 0,
        audit: 0,
        policies: new Set(),
        flows: [],
        lastSeen: f.time,
      };
      this.edges.set(id, e);
    }
    if (f.verdict === "DROPPED") e.dropped++;
    else if (f.verdict === "AUDIT") e.audit++;
    else e.forwarded++;
    const l7 = l7Of(f);
    if (l7) e.l7 = l7;
    for (const [list, what] of POLICY_FIELDS)
      for (const p of f[list] ?? []) e.policies.add(`${policyText(p)} (${what})`);
    e.flows.push(f);
    if (e.flows.length > LAST_FLOWS) e.flows.shift();
    if (f.time > e.lastSeen) e.lastSeen = f.time;
    this.revision++;
  }

  private node(f: Flow, side: "source" | "destination"): GraphNode | undefined {
    const n = nodeOf(f, side);
    if (!n) return undefined;
    const have = this.nodes.get(n.id);
    if (have) return have;
    if (this.nodes.size >= MAX_NODES) return undefined;
    this.nodes.set(n.id, n);
    return n;
  }

  /** The graph as the page reads it, filtered by namespace (either side) and verdict. */
  view(filter: { namespace?: string; verdict?: "FORWARDED" | "DROPPED" }): GraphView {
    const edges = [...this.edges.values()].filter((e) => {
      if (filter.verdict === "DROPPED" && e.dropped === 0) return false;
      if (filter.verdict === "FORWARDED" && e.forwarded + e.audit === 0) return false;
      if (filter.namespace === undefined) return true;
      return [e.from, e.to].some((id) => this.nodes.get(id)?.namespace === filter.namespace);
    });
    const used = new Set(edges.flatMap((e) => [e.from, e.to]));
    return {
      revision: this.revision,
      namespaces: [
        ...new Set([...this.nodes.values()].map((n) => n.namespace).filter((n) => n !== "")),
      ].sort(),
      nodes: [...this.nodes.values()].filter((n) => used.has(n.id)),
      edges: edges.map((e) => ({
        id: e.id,
        from: e.from,
        to: e.to,
        port: e.port,
        forwarded: e.forwarded,
        dropped: e.dropped,
        audit: e.audit,
        ...(e.l7 !== undefined ? { l7: e.l7 } : {}),
        denied: e.dropped > 0,
      })),
      undrawn: this.dropped,
    };
  }
}

export interface GraphView {
  readonly revision: number;
  readonly namespaces: readonly string[];
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly EdgeView[];
  readonly undrawn: number;
}

export interface EdgeView {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly port: string;
  readonly forwarded: number;
  readonly dropped: number;
  readonly audit: number;
  readonly l7?: string;
  readonly denied: boolean;
}

const POLICY_FIELDS = [
  ["egress_allowed_by", "allows egress"],
  ["ingress_allowed_by", "allows ingress"],
  ["egress_denied_by", "denies egress"],
  ["ingress_denied_by", "denies ingress"],
] as const;

function policyText(p: PolicyRefJSON): string {
  return `${p.kind} ${p.namespace ? p.namespace + "/" : ""}${p.name}`;
}

function label(labels: readonly string[] | undefined, key: string): string | undefined {
  const hit = labels?.find((l) => l.replace(/^[a-z0-9-]+:/, "").startsWith(key + "="));
  return hit?.slice(hit.indexOf("=") + 1);
}

function nodeOf(f: Flow, side: "source" | "destination"): GraphNode | undefined {
  const ep = f[side];
  if (ep?.pod_name) {
    const ns = ep.namespace ?? "default";
    const name = label(ep.labels, "app.kubernetes.io/name") ?? label(ep.labels, "app") ?? ep.pod_name;
    return { id: `${ns}/${name}`, label: name, namespace: ns, kind: "workload" };
  }
  const names =
    side === "destination" ? (f as { destination_names?: string[] }).destination_names : undefined;
  if (names && names.length > 0)
    return { id: `fqdn:${names[0]}`, label: names[0] as string, namespace: "", kind: "fqdn" };
  if (ep?.identity === 1) return { id: "host", label: "host", namespace: "", kind: "host" };
  if (ep?.identity === 2 || ep?.identity === 9 || ep?.identity === 10)
    return { id: "world", label: "world", namespace: "", kind: "world" };
  const ip = side === "source" ? f.IP?.source : f.IP?.destination;
  return ip ? { id: `ip:${ip}`, label: ip, namespace: "", kind: "address" } : undefined;
}

function portOf(f: Flow): string {
  const l4 = f.l4;
  if (!l4) return "-";
  if ("TCP" in l4) return `TCP/${l4.TCP.destination_port}`;
  if ("UDP" in l4) return `UDP/${l4.UDP.destination_port}`;
  if ("SCTP" in l4) return `SCTP/${l4.SCTP.destination_port}`;
  return "ICMPv4" in l4 ? "ICMPv4" : "ICMPv6";
}

function l7Of(f: Flow): string | undefined {
  const l7 = f.l7;
  if (!l7 || l7.type === "RESPONSE") return undefined;
  if (l7.http)
    return `HTTP ${l7.http.method ?? ""} ${l7.http.url ? new URL(l7.http.url, "http://x").pathname : ""}`.trim();
  if (l7.dns) return `DNS ${l7.dns.query}`;
  if (l7.kafka) return `Kafka ${l7.kafka.api_key ?? ""} ${l7.kafka.topic ?? ""}`.trim();
  return undefined;
}
