/**
 * A scratch node for one scenario of `policy test --datapath`: an agent
 * started in-process with its L7 proxy (temp state dir and socket), the
 * scenario's namespaces, policies and endpoints applied through it, one
 * namespace per outside address, and a probe process in every namespace
 * traffic starts or ends in (datapath-traffic.ts: its servers and requests).
 *
 *   <prefix>node          the node (agent's nftables table, routes)
 *   <prefix>ep<id>        endpoints (created by the agent, the scenario's addresses)
 *   <prefix>o<k>          outside addresses (world:, cidr:, remote-node:, kube-apiserver:),
 *                         wired like an endpoint but unknown to the agent
 *
 * The kernel's NFLOG events tell a query's drop (`mbr:d:`) and its redirect
 * to the proxy (`mbr:p:`). destroy() stops the probes and the agent and
 * removes every namespace under the prefix and the temp directory; it is
 * safe to call twice.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startAgent, type RunningAgent } from "../agent/run.js";
import { cleanupPrefix, createEndpoint } from "../datapath/index.js";
import { parseAddr } from "../labels/cidr.js";
import { readNflogInNetns, type NflogEvent } from "../observe/nflog.js";
import { decodePacket } from "../observe/packet.js";
import { Probe } from "../probe/probe.js";
import { PROXY_PORTS, type NodeCidrs, type QueryPlan, type Side } from "./datapath-plan.js";
import type { ListenerRole } from "./datapath-plan-l7.js";
import { listenerFor, sendRequest, startListener, waitFor } from "./datapath-traffic.js";
import type { Scenario } from "../policy/scenario/types.js";
import type { ClusterOptions } from "../cluster/session.js";

export interface ScratchNodeParams {
  /** Unique name prefix of every namespace of this node, e.g. `mbpk3x93-`. */
  readonly prefix: string;
  readonly scenario: Scenario;
  /** The `policies` text of the scenario file, applied through the agent as one file. */
  readonly policiesText: string;
  readonly cidrs: NodeCidrs;
  /**
   * Cluster mode (`--nodes N`, datapath-cluster.ts): the agent joins the cluster
   * and start() builds nothing of the scenario: ScratchCluster does, node by node.
   */
  readonly cluster?: ClusterOptions;
}

/** A drop (`mbr:d:`) or redirect (`mbr:p:`) log of a node. */
interface LogLine {
  readonly prefix: string;
  readonly dst: bigint;
  readonly dport?: number;
  readonly proto: number;
}

/** What one query's connection did: the probe's result, and the kernel's logs of it. */
export interface Observation {
  /** "ok", "timeout", an L7 answer ("200", "denied", "reset", "NOERROR ..."), or an errno. */
  readonly result: string;
  /** NFLOG prefix of the drop (`mbr:d:e3:in:def`) when the kernel logged one for this flow. */
  readonly drop?: string;
  /** NFLOG prefix of the kernel's redirect of this flow to the proxy (`mbr:p:e3:in:r2`). */
  readonly redirect?: string;
  /** On several nodes: the nodes of the two sides, and what the source's node sent onto the underlay. */
  readonly path?: QueryPath;
}

export interface QueryPath {
  readonly from: string;
  readonly to: string;
  /** Packets the source's node put on the underlay meanwhile (its `ul0` counter); only across nodes. */
  readonly underlayPackets?: number;
}

const LOG_GROUP = 1;
/** How long a connection whose first packet waits for a handshake may take (a loaded 2-core box). */
export const AUTH_WAIT_MS = 5000;
/** How long to wait for a drop or redirect log (NFLOG batches up to 50 ms). */
const DROP_LOG_WAIT_MS = 150;
/** How long to look for a redirect log the offline engine does not expect. */
const STRAY_LOG_WAIT_MS = 60;
/** The agent's proxy: the group the kernel lets out unchecked, and its ports (PROXY_PORTS). */
const PROXY = { gid: 1337, uid: 1337, l7Port: 15001, dnsPort: 15053 } as const;

export class ScratchNode {
  private nflog: { stop: () => void } | undefined;
  /** Drop (`mbr:d:`) and redirect (`mbr:p:`) logs, in arrival order. */
  readonly logs: LogLine[] = [];
  private running: RunningAgent | undefined;
  private dir: string | undefined;
  private readonly probes = new Map<string, Probe>();
  private readonly listening = new Map<string, ListenerRole>();
  private readonly outside = new Map<string, string>();
  private readonly nodeAddrs = new Set<string>();
  private readonly endpointNetns = new Map<string, string>();
  /** Set by destroy(): nothing more is sent. */
  destroyed = false;
  private starting: Promise<void> | undefined;

  constructor(private readonly p: ScratchNodeParams) {}

  get nodeNetns(): string {
    return `${this.p.prefix}node`;
  }

  /** Starts the agent and builds the scenario's world (call destroy() also when this throws). */
  start(): Promise<void> {
    this.starting = this.build();
    return this.starting;
  }

  private async build(): Promise<void> {
    const { scenario: s, cidrs } = this.p;
    this.dir = await mkdtemp(join(tmpdir(), "membrane-policy-test-"));
    this.running = await startAgent(
      {
        stateDir: join(this.dir, "state"),
        socketPath: join(this.dir, "agent.sock"),
        nodeNetns: this.nodeNetns,
        netnsPrefix: this.p.prefix,
        podCidr4: cidrs.podCidr4,
        ...(cidrs.podCidr6 !== undefined ? { podCidr6: cidrs.podCidr6 } : {}),
        table: "membrane",
        logGroup: LOG_GROUP,
        engine: s.config,
        logLevel: "silent",
        resyncMs: 0,
        proxy: PROXY,
        ...(this.p.cluster ? { cluster: this.p.cluster } : {}),
        // Mutual authentication (rules requiring it are enforced): SVIDs of a scratch trust domain.
        ...(s.config.meshAuth === true
          ? { spiffe: { trustDomain: "scenario.membrane.local", workloadApi: false } }
          : {}),
      },
      pino({ level: "silent" }),
    );
    this.nflog = await readNflogInNetns(this.nodeNetns, LOG_GROUP, (e) => this.onLog(e));
    if (this.p.cluster) return;
    await this.setWorld();
    await this.applyPolicies();
    await this.createEndpoints(s.endpoints);
  }

  /** The scenario's namespaces (with their labels) and services, given to this node's agent. */
  async setWorld(): Promise<void> {
    const s = this.p.scenario;
    const agent = this.need();
    const namespaces = new Map(s.namespaces);
    for (const e of s.endpoints) if (!namespaces.has(e.namespace)) namespaces.set(e.namespace, {});
    for (const [name, labels] of namespaces) await agent.setNamespaceLabels(name, { ...labels });
    for (const svc of s.services) await agent.upsertService(svc);
  }

  /** Applies the scenario's policies through this node's agent; the cluster revision (cluster mode). */
  async applyPolicies(): Promise<number | undefined> {
    if (this.p.policiesText.trim() === "") return undefined;
    const r = await this.need().applyPolicies(this.p.policiesText, this.p.scenario.file);
    return r.clusterRevision;
  }

  /** Creates these endpoints of the scenario on this node (with the scenario's addresses). */
  async createEndpoints(eps: Scenario["endpoints"]): Promise<void> {
    const { cidrs } = this.p;
    const agent = this.need();
    // Endpoints with every address given go first, so that an address IPAM picks for one
    // without (an IPv6 address on a dual-stack node) cannot take one the scenario names.
    const complete = (e: (typeof eps)[number]): boolean => cidrs.podCidr6 === undefined || e.ips.length > 1;
    const ordered = [...eps.filter(complete), ...eps.filter((e) => !complete(e))];
    for (const e of ordered) {
      const v4 = e.ips.find((ip) => parseAddr(ip)?.family === 4);
      const v6 = e.ips.find((ip) => parseAddr(ip)?.family === 6);
      const view = await agent.createEndpointRequest({
        name: e.name,
        namespace: e.namespace,
        labels: { ...e.labels },
        ...(e.namedPorts && e.namedPorts.length > 0 ? { ports: e.namedPorts } : {}),
        ...(v4 !== undefined ? { ipv4: v4 } : {}),
        ...(v6 !== undefined ? { ipv6: v6 } : {}),
      });
      this.endpointNetns.set(`${e.namespace}/${e.name}`, view.netns);
    }
  }

  private need(): RunningAgent["agent"] {
    if (this.destroyed || !this.running) throw new Error("the scratch node was torn down (interrupted)");
    return this.running.agent;
  }

  /** The running agent's cluster session (cluster mode). */
  get cluster(): RunningAgent["cluster"] {
    return this.running?.cluster;
  }

  /** Registers another node's or an API server's address with the agent (once per address). */
  async nodeAddress(
    ip: string,
    kind: "remote-node" | "kube-apiserver",
    labels?: Readonly<Record<string, string>>,
  ): Promise<void> {
    if (this.nodeAddrs.has(ip) || !this.running) return;
    this.nodeAddrs.add(ip);
    await this.running.agent.setNodeAddress(ip, kind, labels);
  }

  /** Sends the query's traffic; looks for the kernel's drop (on a timeout) and redirect logs of it. */
  async send(plan: QueryPlan, timeoutMs: number): Promise<Observation> {
    if (this.destroyed) throw new Error("the scratch node was torn down (interrupted)");
    const src = await this.probe(plan.from);
    const l = listenerFor(plan);
    if (l) await this.listen(plan.to, l[0], plan.port ?? 0, l[1]);
    // auth: false = the source identity's SVID withheld (no pair can be made); true = its SVID valid.
    const auth = this.agent?.spiffe?.auth;
    const from = plan.from.kind === "endpoint" ? this.identityOf(plan.from.key) : undefined;
    if (plan.auth === false && auth && from !== undefined) await auth.revoke(from);
    try {
      // A held first packet waits for the handshake: the drop verdict needs that long more.
      return await sendObserved(src, plan, plan.auth === true ? Math.max(timeoutMs, AUTH_WAIT_MS) : timeoutMs, [this]); // prettier-ignore
    } finally {
      if (plan.auth === false && auth && from !== undefined) auth.restore(from);
    }
  }

  /** The identity of a scenario endpoint (`namespace/name`), once created. */
  private identityOf(key: string): number | undefined {
    const i = key.indexOf("/");
    try {
      return this.agent?.getEndpoint(key.slice(0, i), key.slice(i + 1)).identity;
    } catch {
      return undefined;
    }
  }

  /** The in-process agent (once started). */
  get agent(): RunningAgent["agent"] | undefined {
    return this.running?.agent;
  }

  /** Starts the server a destination port runs (once; assignListeners made the roles agree). */
  async listen(side: Side, transport: "tcp" | "udp", port: number, role: ListenerRole): Promise<void> {
    const dst = await this.probe(side);
    const key = `${dst.netns}|${transport}/${port}`;
    if (this.listening.has(key)) return;
    if (side.kind === "host" && PROXY_PORTS.has(port)) throw new Error(`port ${port} is the proxy's`);
    this.listening.set(key, role);
    await startListener(dst, transport, port, role);
  }

  private onLog(e: NflogEvent): void {
    if (!e.prefix.startsWith("mbr:d:") && !e.prefix.startsWith("mbr:p:")) return;
    const p = decodePacket(e.packet);
    if (!p.ok) return;
    const dst = parseAddr(p.IP.destination)?.value;
    if (dst === undefined) return;
    const l4 = p.l4;
    const ports = l4 && "TCP" in l4 ? l4.TCP : l4 && "UDP" in l4 ? l4.UDP : undefined;
    this.logs.push({
      prefix: e.prefix,
      dst,
      proto: p.proto,
      ...(ports ? { dport: ports.destination_port } : {}),
    });
  }

  /** The probe process of a side's namespace (started at the first use). */
  async probe(side: Side): Promise<Probe> {
    const netns = await this.netnsOf(side);
    let p = this.probes.get(netns);
    if (!p) {
      p = Probe.start(netns);
      this.probes.set(netns, p);
    }
    return p;
  }

  private async netnsOf(side: Side): Promise<string> {
    switch (side.kind) {
      case "host":
        return this.nodeNetns;
      case "endpoint": {
        const ns = this.endpointNetns.get(side.key);
        if (ns === undefined) throw new Error(`no namespace for endpoint ${side.key}`);
        return ns;
      }
      case "outside": {
        const known = this.outside.get(side.ip);
        if (known !== undefined) return known;
        const k = this.outside.size + 1;
        const netns = `${this.p.prefix}o${k}`;
        const { gateway4, gateway6 } = this.p.cidrs;
        const v6 = parseAddr(side.ip)?.family === 6;
        // An outside address is wired like an endpoint (veth, /32 route in the node, default
        // route back via the node), but the agent does not know it: its traffic is world to
        // the datapath, or whatever identity the ipcache gives the address.
        await createEndpoint({
          node: {
            netns: this.nodeNetns,
            gateway4,
            ...(gateway6 !== undefined ? { gateway6 } : {}),
          },
          name: `outside ${side.ip}`,
          netns,
          hostIfname: `mbo${k}`,
          ...(v6 ? { ipv6: side.ip } : { ipv4: side.ip }),
        });
        this.outside.set(side.ip, netns);
        return netns;
      }
    }
  }

  /** Stops probes and agent, removes every namespace of the prefix and the temp directory. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    // A destroy from a signal handler may come while start() is half way: let it settle
    // first, or the agent would go on creating namespaces and files after the cleanup.
    await this.starting?.catch(() => undefined);
    this.nflog?.stop();
    for (const p of this.probes.values()) p.stop();
    this.probes.clear();
    await this.running?.stop().catch(() => undefined);
    await cleanupPrefix(this.p.prefix).catch(() => undefined);
    if (this.dir !== undefined) await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Makes the plan's request from `src` and looks in the logs of `nodes` (the
 * nodes the connection passes) for the kernel's drop (on a timeout) and redirect of it.
 */
export async function sendObserved(
  src: Probe,
  plan: QueryPlan,
  timeoutMs: number,
  nodes: readonly ScratchNode[],
): Promise<Observation> {
  const marks = nodes.map((n) => n.logs.length);
  const result = await sendRequest(src, plan, timeoutMs);
  const transport = plan.kind === "udp" || (plan.kind === "dns" && plan.dns?.tcp !== true) ? 17 : 6;
  const proto = plan.kind === "ping" ? (plan.family === 4 ? 1 : 58) : transport;
  const want = parseAddr(plan.address)?.value;
  const port = plan.port ?? 0;
  const find = (kind: "d" | "p") => (): string | undefined => {
    for (const [i, n] of nodes.entries()) {
      const hit = n.logs
        .slice(marks[i])
        .find(
          (d) =>
            d.prefix.startsWith(`mbr:${kind}:`) &&
            d.dst === want &&
            d.proto === proto &&
            (plan.kind === "ping" || d.dport === port),
        )?.prefix;
      if (hit !== undefined) return hit;
    }
    return undefined;
  };
  const drop = result === "timeout" ? await waitFor(find("d"), DROP_LOG_WAIT_MS) : undefined;
  // Plain echo traffic never meets the proxy's answers: only L7, bare connects and
  // plain bytes sent to a proxied port (serverNames) are checked.
  const l7 = !["tcp", "udp", "ping"].includes(plan.kind) || plan.proxied !== undefined;
  const redirect = l7
    ? await waitFor(find("p"), plan.proxied !== undefined ? DROP_LOG_WAIT_MS : STRAY_LOG_WAIT_MS)
    : undefined;
  return {
    result,
    ...(drop !== undefined ? { drop } : {}),
    ...(redirect !== undefined ? { redirect } : {}),
  };
}
