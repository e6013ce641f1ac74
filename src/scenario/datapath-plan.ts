/**
 * What `policy test --datapath` can build for real, decided without touching
 * the kernel: the scratch node's pod CIDRs, and for every query either a plan
 * (which namespace connects to which address, how) or the reason it is skipped.
 *
 *   Scenario + offline Decision per query --planQuery--> QueryPlan | {skip: reason}
 *   every plan --assignListeners (datapath-plan-l7.ts)--> one server per destination port
 *
 * L7 requests (HTTP, Kafka, TLS SNI, DNS queries) run for real through the
 * node's proxy (datapath-plan-l7.ts); DNS answers a scenario states are fed
 * to the agent before the query (datapath-dns-feed.ts), so `fqdn:` peers are
 * addresses with FQDN identities in the kernel too. A query is skipped
 * whenever the kernel and proxy cannot give the verdict the scenario
 * describes (mutual authentication, SCTP, ICMP other than echo, ...):
 * skipped, never counted as passed.
 */
import { addrString, familyWidth, mask, parseAddr, type Prefix, prefixString } from "../labels/cidr.js";
import type { Decision, EndpointSpec } from "../policy/query.js";
import { hostHeader, l7Part, type L7Fields } from "./datapath-plan-l7.js";
import { dnsKey, findEndpoint, parsePeer } from "../policy/scenario/peer.js";
import { isExtendedProtocol } from "../policy/types.js";
import type { Scenario, ScenarioQuery } from "../policy/scenario/types.js";

/** A side of a connection on the scratch node. */
export type Side =
  | { readonly kind: "endpoint"; readonly key: string }
  | { readonly kind: "host" }
  /** An address outside the node (world, cidr, remote-node, kube-apiserver): its own namespace. */
  | { readonly kind: "outside"; readonly ip: string; readonly node?: "remote-node" | "kube-apiserver" };

/**
 * How a query's traffic is made: tcp/udp (echo round trip), ping, connect
 * (TCP handshake only), or one L7 request (http, kafka, tls handshake, dns query).
 */
export type PlanKind = "tcp" | "udp" | "ping" | "connect" | "http" | "kafka" | "tls" | "dns";

export interface QueryPlan extends L7Fields {
  readonly from: Side;
  readonly to: Side;
  readonly family: 4 | 6;
  /** The destination address the source connects to. */
  readonly address: string;
  readonly kind: PlanKind;
  readonly port?: number;
  /**
   * Mutual authentication: true = the source's SVID is valid (the handshake runs and succeeds);
   * false = withheld (`membrane auth revoke`: no entry can be made). Absent: not an auth query.
   */
  readonly auth?: boolean;
}

export interface NodeCidrs {
  readonly podCidr4: string;
  readonly gateway4: string;
  readonly podCidr6?: string;
  readonly gateway6?: string;
}

/** Smallest prefix holding every address, no longer than `maxBits`; undefined for no addresses. */
export function coveringPrefix(addrs: readonly string[], family: 4 | 6, maxBits: number): Prefix | undefined {
  const values = addrs.flatMap((a) => {
    const v = parseAddr(a);
    return v !== undefined && v.family === family ? [v.value] : [];
  });
  const first = values[0];
  if (first === undefined) return undefined;
  for (let bits = Math.min(maxBits, familyWidth(family)); bits >= 0; bits--) {
    const m = mask(family, bits);
    const net = first & m;
    if (values.every((v) => (v & m) === net)) return { family, addr: net, bits };
  }
  return undefined;
}

/** The pod CIDRs of a scenario's scratch node: covering its endpoints, at least /24 (IPv6: /64). */
export function nodeCidrs(s: Pick<Scenario, "endpoints" | "config">): NodeCidrs {
  const all = s.endpoints.flatMap((e) => e.ips);
  const p4 = coveringPrefix(all, 4, 24) ?? { family: 4 as const, addr: 0x0a000100n, bits: 24 };
  const out = { podCidr4: prefixString(p4), gateway4: addrString(4, p4.addr + 1n) };
  if (s.config.dualStack !== true) return out;
  const p6 = coveringPrefix(all, 6, 64) ?? { family: 6 as const, addr: 0xfd00n << 112n, bits: 64 };
  return { ...out, podCidr6: prefixString(p6), gateway6: addrString(6, p6.addr + 1n) };
}

/** Why none of a scenario's queries can run on the datapath, or undefined. */
export function scenarioSkipReason(s: Scenario, cidrs: NodeCidrs = nodeCidrs(s)): string | undefined {
  const health = s.endpoints.find((e) => e.kind === "health");
  if (health)
    return `endpoint ${health.namespace}/${health.name} is a health endpoint, which the agent cannot create`;
  const sa = s.endpoints.find((e) => e.serviceAccount !== undefined);
  if (sa) return `endpoint ${sa.namespace}/${sa.name} has a service account, which the agent cannot set yet`;
  for (const e of s.endpoints) {
    for (const ip of e.ips) {
      const why = reservedAddress(ip, cidrs);
      if (why !== undefined) return `endpoint ${e.namespace}/${e.name}'s address ${ip} is ${why}`;
    }
  }
  return undefined;
}

/** Why `ip` cannot be an endpoint of the scratch node: the pod CIDR's network, gateway or last address. */
function reservedAddress(ip: string, c: NodeCidrs): string | undefined {
  const a = parseAddr(ip);
  const cidr = a?.family === 6 ? c.podCidr6 : c.podCidr4;
  if (!a || cidr === undefined) return undefined;
  const [base, bits] = cidr.split("/");
  const net = parseAddr(base ?? "")?.value ?? 0n;
  const last = net + (1n << BigInt(familyWidth(a.family) - Number(bits))) - 1n;
  if (a.value === net + 1n) return `the scratch node's gateway (first host of the pod CIDR ${cidr})`;
  if (a.value === net || a.value === last) return `the network or last address of the pod CIDR ${cidr}`;
  return undefined;
}

export interface PlanContext {
  readonly scenario: Scenario;
  readonly cidrs: NodeCidrs;
  /**
   * Names (dnsKey) -> addresses, in the order DNS answers gave them, as the
   * offline session knows them when the query runs: what `fqdn:<name>` means.
   */
  readonly dnsNames?: ReadonlyMap<string, readonly string[]>;
  /**
   * On several nodes (`--nodes N`): every node's CIDRs, and the node of an
   * endpoint (`namespace/name`); `host` is then the node of the other side.
   */
  readonly nodes?: { readonly cidrs: readonly NodeCidrs[]; readonly nodeOf: (key: string) => number };
}

/**
 * Sets `names` to a query's `dns` answers as the offline session does
 * (ScenarioSession.prepare): a query's `dns` is every answer seen so far; a
 * query without `dns` changes nothing.
 */
export function learnDns(names: Map<string, string[]>, q: ScenarioQuery): void {
  if (q.dns === undefined) return;
  names.clear();
  for (const d of q.dns) {
    const known = names.get(dnsKey(d.name)) ?? [];
    for (const ip of d.ips) if (!known.includes(ip)) known.push(ip);
    names.set(dnsKey(d.name), known);
  }
}

/** The plan of one query, or why it is skipped. `d` is the offline engine's decision. */
export function planQuery(q: ScenarioQuery, d: Decision, ctx: PlanContext): QueryPlan | { skip: string } {
  // A query the scenario expects dropped at L3/L4 is dropped by the kernel before any
  // authentication could matter: it runs.
  const l4Drop = q.expect === "deny" && (q.how ?? d.how) === "drop";
  // Mutual authentication runs for real, on one node and across nodes (auth: true = both SVIDs
  // valid, the handshake succeeds; false/absent = the source's SVID is withheld, as a deleted
  // SPIRE entry: no entry can be made).
  const authQuery = !l4Drop && (q.auth === true || d.how === "auth-required" || [d.egress, d.ingress].some(needsAuth)); // prettier-ignore
  const l7 = l7Part(q, d);
  if (l7 !== undefined && "skip" in l7) return l7;
  if (q.proto === "SCTP") return { skip: "SCTP: this kernel cannot open SCTP sockets" };
  if (isExtendedProtocol(q.proto))
    return {
      skip: `${q.proto}: the probes send TCP, UDP and ICMP only (real GRE and ESP packets: test/datapath/f7-extended-protocols.test.ts)`,
    };
  const echo = q.proto === "ICMP" ? 8 : 128;
  if ((q.proto === "ICMP" || q.proto === "ICMPv6") && q.icmpType !== echo) {
    return {
      skip: `only ICMP echo requests (type ${echo}) can be sent (ping; the probes have no raw sockets), not type ${q.icmpType ?? "?"}`,
    };
  }
  if (q.from === q.to) return { skip: "a connection to itself never leaves its namespace" };

  const from = side(q.from, ctx);
  const to = side(q.to, ctx);
  if ("skip" in from) return from;
  if ("skip" in to) return to;
  if (to.kind === "host" && q.port !== undefined && PROXY_PORTS.has(q.port)) {
    return { skip: `port ${q.port} of the node is the scratch node's L7 proxy` };
  }
  const fams = [from, to].flatMap((x) => (x.kind === "outside" ? [parseAddr(x.ip)?.family ?? 4] : []));
  const family: 4 | 6 = fams[0] ?? (q.proto === "ICMPv6" ? 6 : 4);
  if (fams.some((f) => f !== family)) return { skip: "the two sides are addresses of different IP families" };
  if ((q.proto === "ICMP" && family === 6) || (q.proto === "ICMPv6" && family === 4)) {
    return { skip: `${q.proto} between IPv${family} addresses cannot be sent` };
  }
  for (const x of [from, to]) {
    const why = familyProblem(x, family, ctx);
    if (why !== undefined) return { skip: why };
  }
  const kind: PlanKind = q.proto === "TCP" ? "tcp" : q.proto === "UDP" ? "udp" : "ping";
  const addr = address(to, family, ctx, from);
  const plan: QueryPlan = {
    from,
    to,
    family,
    address: addr,
    kind,
    ...(q.port !== undefined ? { port: q.port } : {}),
    ...(authQuery || q.auth !== undefined ? { auth: q.auth === true } : {}),
  };
  if (l7 === undefined) return plan;
  const { http, ...rest } = l7;
  return {
    ...plan,
    ...rest,
    ...(http
      ? { http: { ...http, headers: { Host: hostHeader(addr, family, q.port ?? 80), ...http.headers } } }
      : {}),
  };
}

/** The scratch node's proxy ports (ScratchNode starts the agent's proxy on them). */
export const PROXY_PORTS: ReadonlySet<number> = new Set([15001, 15053]);

function needsAuth(x: Decision["egress"]): boolean {
  return x.auth !== undefined && x.auth !== "disabled";
}

function side(text: string, ctx: PlanContext): Side | { skip: string } {
  const p = parsePeer(text);
  if ("error" in p) return { skip: p.error };
  switch (p.kind) {
    case "endpoint": {
      const e = findEndpoint(ctx.scenario.endpoints, p);
      return "error" in e ? { skip: e.error } : { kind: "endpoint", key: `${e.namespace}/${e.name}` };
    }
    case "host":
      return { kind: "host" };
    case "fqdn": {
      const ip = ctx.dnsNames?.get(dnsKey(p.name))?.[0];
      if (ip === undefined) return { skip: `no DNS answer seen for "${p.name}"` };
      const why = outsideProblem(ip, ctx);
      return why !== undefined ? { skip: why } : { kind: "outside", ip };
    }
    default: {
      const why = outsideProblem(p.ip, ctx);
      if (why !== undefined) return { skip: why };
      return p.kind === "remote-node" || p.kind === "kube-apiserver"
        ? { kind: "outside", ip: p.ip, node: p.kind }
        : { kind: "outside", ip: p.ip };
    }
  }
}

/** Why an outside address cannot get its own namespace on the scratch node, or undefined. */
export function outsideProblem(ip: string, ctx: PlanContext): string | undefined {
  const a = parseAddr(ip);
  if (!a || !isUnicast(ip)) return `${ip} is not a unicast address a namespace can hold`;
  for (const c of ctx.nodes?.cidrs ?? [ctx.cidrs]) {
    if (sameAddr(ip, c.gateway4) || sameAddr(ip, c.gateway6))
      return `${ip} is the scratch node's own gateway address`;
  }
  const owner = ctx.scenario.endpoints.find((e) => e.ips.some((x) => sameAddr(x, ip)));
  if (owner) return `${ip} is the address of endpoint ${owner.namespace}/${owner.name}`;
  return undefined;
}

function sameAddr(a: string, b: string | undefined): boolean {
  const x = parseAddr(a);
  const y = b === undefined ? undefined : parseAddr(b);
  return x !== undefined && y !== undefined && x.family === y.family && x.value === y.value;
}

function isUnicast(ip: string): boolean {
  const a = parseAddr(ip);
  if (!a) return false;
  if (a.family === 4) {
    const first = Number(a.value >> 24n);
    return first !== 0 && first !== 127 && first < 224 && a.value !== 0xffffffffn;
  }
  return a.value > 1n && a.value >> 120n !== 0xffn && a.value >> 118n !== 0x3fan; // not ::, ::1, ff00::/8, fe80::/10
}

function endpointOf(key: string, ctx: PlanContext): EndpointSpec | undefined {
  return ctx.scenario.endpoints.find((e) => `${e.namespace}/${e.name}` === key);
}

function familyProblem(x: Side, family: 4 | 6, ctx: PlanContext): string | undefined {
  if (family === 4) return undefined;
  if (x.kind === "endpoint") {
    const e = endpointOf(x.key, ctx);
    if (!e?.ips.some((ip) => parseAddr(ip)?.family === 6)) return `endpoint ${x.key} has no IPv6 address`;
  }
  if (x.kind === "host" && ctx.cidrs.gateway6 === undefined)
    return "the node has no IPv6 address (dualStack: false)";
  if (x.kind === "outside" && ctx.cidrs.podCidr6 === undefined) {
    return "IPv6 peers need config.dualStack: true (the node has no IPv6 routes)";
  }
  return undefined;
}

function address(to: Side, family: 4 | 6, ctx: PlanContext, from: Side): string {
  switch (to.kind) {
    case "outside":
      return to.ip;
    case "host": {
      // On several nodes, an endpoint's "host" is its own node.
      const c =
        (ctx.nodes && from.kind === "endpoint" ? ctx.nodes.cidrs[ctx.nodes.nodeOf(from.key)] : undefined) ??
        ctx.cidrs;
      return (family === 6 ? c.gateway6 : c.gateway4) ?? "";
    }
    case "endpoint":
      return endpointOf(to.key, ctx)?.ips.find((ip) => parseAddr(ip)?.family === family) ?? "";
  }
}
