/**
 * The traffic of one datapath plan: the server its destination port runs,
 * and the one request its source's probe makes.
 *
 *   plan --listenerFor--> [transport, role] --startListener--> echo | HTTP | Kafka broker | TLS | resolver
 *   plan --sendRequest--> probe op --> "ok" | "200" | "denied" | "reset" | "NOERROR ..." | "timeout" | errno
 *   DnsFeed --feedDns--> resolver answers set, asker's query through the DNS proxy | Agent.observeDnsAnswer
 */
import type { Probe } from "../probe/probe.js";
import { selfSignedCert } from "../probe/tls-cert.js";
import { addrString, parseAddr } from "../labels/cidr.js";
import type { DnsFeed } from "./datapath-dns-feed.js";
import type { Agent } from "../agent/agent.js";
import type { ScratchNode } from "./datapath-node.js";
import type { QueryPlan, Side } from "./datapath-plan.js";
import type { ListenerRole } from "./datapath-plan-l7.js";

export { listenerFor } from "./datapath-plan-l7.js";

export async function startListener(
  dst: Probe,
  transport: "tcp" | "udp",
  port: number,
  role: ListenerRole,
): Promise<void> {
  switch (role) {
    case "echo":
      return dst.listen(transport, port);
    case "http":
      return dst.listenHttp(port);
    case "kafka":
      return dst.listenKafka(port);
    case "tls": {
      const { cert, key } = await selfSignedCert();
      return dst.listenTls(port, cert, key);
    }
    case "dns":
      return dst.serveDns(transport, port);
  }
}

/** Longest wait for an L7 answer: the request goes through the proxy (DNS: and the agent). */
export function requestTimeout(p: QueryPlan, timeoutMs: number): number {
  if (p.kind === "dns") return Math.max(timeoutMs, 2000);
  if (p.kind === "http" || p.kind === "kafka" || p.kind === "tls") return Math.max(timeoutMs, 1000);
  return timeoutMs;
}

/** Makes the plan's request from `src`; the probe's raw result. */
export async function sendRequest(src: Probe, p: QueryPlan, timeoutMs: number): Promise<string> {
  const port = p.port ?? 0;
  const t = requestTimeout(p, timeoutMs);
  switch (p.kind) {
    case "ping":
      return src.ping(p.address, t);
    case "tcp":
      return src.tcp(p.address, port, t);
    case "udp":
      return src.udp(p.address, port, t);
    case "connect":
      return src.connect(p.address, port, t);
    case "http": {
      const h = p.http ?? { method: "GET", path: "/", headers: {} };
      return src.http(p.address, port, { method: h.method, path: h.path, headers: { ...h.headers } }, t);
    }
    case "kafka":
      return src.kafka(p.address, port, p.kafka ?? { apiKey: 0, apiVersion: 0 }, t);
    case "tls":
      return src.tls(p.address, port, p.sni ?? "", t);
    case "dns":
      return src.dnsQuery(p.address, p.dns?.name ?? "", { port, tcp: p.dns?.tcp === true, timeoutMs: t });
  }
}

/** Polls `f` every 10 ms for up to `ms`; its first defined value. */
export async function waitFor(f: () => string | undefined, ms: number): Promise<string | undefined> {
  for (let waited = 0; waited < ms; waited += 10) {
    const v = f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  return f();
}

/** Longest wait for a DNS answer fed through the proxy (the agent enforces it first). */
const FEED_TIMEOUT_MS = 3000;

/** Where DNS answers go: a scratch node, or a scratch cluster (datapath-cluster.ts). */
export interface FeedTarget {
  readonly destroyed: boolean;
  /** Every node's agent. */
  readonly agents: readonly Agent[];
  /** The agents of the nodes other than the one `side` runs on (none on one node). */
  othersOf(side: Side): readonly Agent[];
  probe(side: Side, other?: Side): Promise<Probe>;
  listen(
    side: Side,
    other: Side | undefined,
    transport: "tcp" | "udp",
    port: number,
    role: ListenerRole,
  ): Promise<void>;
}

/** A scratch node as a FeedTarget. */
export function nodeTarget(node: ScratchNode): FeedTarget {
  return {
    get destroyed() {
      return node.destroyed;
    },
    get agents() {
      return node.agent ? [node.agent] : [];
    },
    othersOf: () => [],
    probe: (side) => node.probe(side),
    listen: (side, _other, transport, port, role) => node.listen(side, transport, port, role),
  };
}

/**
 * Gives the agents a query's DNS answer before the query: through the DNS
 * proxy (the asker's probe asks the resolver, which answers the scenario's
 * addresses), or directly; or makes them forget one; an answer the proxy would
 * not see is not given at all. Resolves with a failure text when the proxy
 * did not hand the answer over. On several nodes, the nodes other than the
 * asker's are given the answer directly once their peer's proxy learned it:
 * the scenario's answers are what "the node" has seen, and FQDN identities
 * are learned per node (as in Cilium).
 */
export async function feedDns(t: FeedTarget, f: DnsFeed): Promise<string | undefined> {
  const agents = t.agents;
  if (t.destroyed || agents.length === 0) throw new Error("the scratch node was torn down (interrupted)");
  if (f.unseen !== undefined) return undefined;
  if (f.forget) {
    for (const a of agents) await a.forgetDnsAnswer(f.name, f.ips);
    return undefined;
  }
  if (!f.via) {
    for (const a of agents) await a.observeDnsAnswer(f.name, f.ips, f.ttl ?? 0);
    return undefined;
  }
  const resolver = await t.probe(f.via.to, f.via.from);
  await t.listen(f.via.to, f.via.from, "udp", 53, "dns");
  await resolver.setDns(f.name, f.ips, f.ttl);
  const asker = await t.probe(f.via.from, f.via.to);
  const v4 = f.ips.filter((ip) => parseAddr(ip)?.family === 4);
  const v6 = f.ips.filter((ip) => parseAddr(ip)?.family === 6);
  for (const [qtype, ips] of [
    ["A", v4],
    ["AAAA", v6],
  ] as const) {
    if (ips.length === 0) continue;
    const r = await asker.dnsQuery(f.via.address, f.name, { qtype, timeoutMs: FEED_TIMEOUT_MS });
    const got = r.startsWith("NOERROR ") ? canonical(r.slice(8).split(",")) : undefined;
    if (got !== canonical(ips)) return `${qtype} ${f.name} through the DNS proxy answered ${r}`;
  }
  for (const a of t.othersOf(f.via.from)) await a.observeDnsAnswer(f.name, f.ips, f.ttl ?? 0);
  return undefined;
}

/** Addresses in one canonical text each, sorted: answers compare whatever their spelling. */
function canonical(ips: readonly string[]): string {
  return ips
    .map((ip) => {
      const a = parseAddr(ip);
      return a ? addrString(a.family, a.value) : ip;
    })
    .sort()
    .join(",");
}
