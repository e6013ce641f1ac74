/**
 * A scratch cluster for one scenario of `policy test --datapath --nodes N`:
 * a real etcd, an underlay bridge in a namespace of its own, and N in-process
 * agents in cluster mode (native routing), each in its node namespace with the
 * pod CIDRs the placement gave it (datapath-placement.ts).
 *
 *   <prefix>u-ul                 the underlay bridge (node i at 172.31.0.<i+1>)
 *   <prefix><a|b|...>-node       node namespaces (agent's nftables table, routes)
 *   <prefix><a|b|...>-ep<id>     its endpoints; <prefix><x>-o<k> its outside addresses
 *
 * Built in the order a cluster is: agents join (node records, pod CIDR claims);
 * every node gets the scenario's namespaces and services; the policies are
 * applied ONCE, through the first node, and every node must realize that
 * revision; then each node creates its endpoints, and the run waits until
 * every endpoint of every other node is in each node's ipcache and each
 * node's kernel holds what its agent wants. A query's traffic starts on the
 * node of its source (host and outside addresses: on the node of the other
 * side) and is judged by the kernel logs of both nodes it passes.
 * destroy() stops the agents, removes every namespace under the prefix and
 * stops etcd; it is safe to call twice.
 */
import type { Agent } from "../agent/agent.js";
import { readRealized, waitRealized } from "../cluster/realized.js";
import { cleanupPrefix } from "../datapath/index.js";
import { addrString, parseAddr } from "../labels/cidr.js";
import { startEtcd, type EtcdHandle } from "../lab/etcd.js";
import { sh, Underlay } from "../lab/underlay.js";
import type { Probe } from "../probe/probe.js";
import type { Scenario } from "../policy/scenario/types.js";
import { AUTH_WAIT_MS, ScratchNode, sendObserved, type Observation } from "./datapath-node.js";
import type { QueryPlan, Side } from "./datapath-plan.js";
import type { ListenerRole } from "./datapath-plan-l7.js";
import type { Placement } from "./datapath-placement.js";
import { listenerFor } from "./datapath-traffic.js";

export interface ScratchClusterParams {
  /** Unique name prefix of every namespace of the cluster, e.g. `mbpk3x90-`. */
  readonly prefix: string;
  readonly scenario: Scenario;
  readonly policiesText: string;
  readonly placement: Placement;
}

/** Safety net for the cluster to settle (etcd round trips on a loaded machine), not a measurement. */
const SETTLE_MS = 60_000;

/** A node's name in the cluster: node-a, node-b, ... */
export function nodeName(i: number): string {
  return i < 26 ? `node-${String.fromCharCode(97 + i)}` : `node-${i + 1}`;
}

export class ScratchCluster {
  readonly nodes: ScratchNode[] = [];
  private etcd: EtcdHandle | undefined;
  private underlay: Underlay | undefined;
  destroyed = false;
  private starting: Promise<void> | undefined;

  constructor(private readonly p: ScratchClusterParams) {}

  start(): Promise<void> {
    this.starting = this.build();
    return this.starting;
  }

  private async build(): Promise<void> {
    const { scenario: s, placement } = this.p;
    this.etcd = await startEtcd();
    this.underlay = await Underlay.create(`${this.p.prefix}u`);
    const etcd = this.etcd;
    const underlay = this.underlay;
    // The nodes join at once (each waits on its own processes and etcd, not on the others);
    // all settle before a failure is thrown, so that destroy() finds every node started.
    const joined = await Promise.allSettled(
      placement.nodes.map(async (cidrs, i) => {
        if (this.destroyed) throw new Error("interrupted");
        const prefix = `${this.p.prefix}${nodeName(i).slice(5)}-`;
        // The node namespace joins the underlay first; the agent adopts it (brings lo up).
        const u = await underlay.node(i + 1, { netns: `${prefix}node`, podCidr: cidrs.podCidr4 });
        const node = new ScratchNode({
          prefix,
          scenario: s,
          policiesText: this.p.policiesText,
          cidrs,
          cluster: {
            endpoints: [etcd.endpoint],
            node: nodeName(i),
            nodeIp: { ipv4: u.ip },
            labels: { ...s.config.nodeLabels },
            podCidrs: {
              configured: {
                ipv4: cidrs.podCidr4,
                ...(cidrs.podCidr6 !== undefined ? { ipv6: cidrs.podCidr6 } : {}),
              },
            },
            leaseTtlSeconds: 10,
            tunnel: "native",
          },
        });
        this.nodes[i] = node;
        await node.start();
      }),
    );
    for (const j of joined) if (j.status === "rejected") throw j.reason;
    for (const n of this.nodes) await n.setWorld();
    const first = this.nodes[0];
    const rev = first ? await first.applyPolicies() : undefined;
    const kv = first?.cluster?.kv;
    if (rev !== undefined && kv) await waitRealized(() => readRealized(kv), rev, SETTLE_MS);
    for (const [i, n] of this.nodes.entries())
      await n.createEndpoints(
        s.endpoints.filter((e) => placement.nodeOf.get(`${e.namespace}/${e.name}`) === i),
      );
    await this.settle();
  }

  /** Waits until each node knows every other node's endpoints and its kernel holds what its agent wants. */
  private async settle(): Promise<void> {
    const { scenario: s, placement } = this.p;
    const deadline = Date.now() + SETTLE_MS;
    for (const [i, n] of this.nodes.entries()) {
      const agent = this.agentOf(n);
      const remote = s.endpoints.filter((e) => placement.nodeOf.get(`${e.namespace}/${e.name}`) !== i);
      const want = remote.flatMap((e) => e.ips.map((ip) => canonical(ip)));
      for (;;) {
        const known = new Set(agent.remoteEndpoints.list().map((r) => r.ip));
        if (want.every((ip) => known.has(ip)) && (await agent.datapathDiff()).length === 0) break;
        if (Date.now() > deadline) {
          const missing = want.filter((ip) => !known.has(ip));
          throw new Error(
            `${nodeName(i)} did not settle: ${missing.length > 0 ? `remote endpoints ${missing.join(", ")} not in its ipcache` : "its kernel differs from what its agent wants"}`,
          );
        }
        if (this.destroyed) throw new Error("interrupted");
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private agentOf(n: ScratchNode): Agent {
    const a = n.agent;
    if (!a || this.destroyed) throw new Error("the scratch cluster was torn down (interrupted)");
    return a;
  }

  /** Every node's agent (DNS answers and node addresses are given to each). */
  get agents(): Agent[] {
    return this.nodes.map((n) => this.agentOf(n));
  }

  /** The agents of the nodes other than the one `side` runs on. */
  othersOf(side: Side): Agent[] {
    const n = this.nodeFor(side);
    return this.nodes.filter((x) => x !== n).map((x) => this.agentOf(x));
  }

  /** The node of an endpoint `namespace/name`. */
  nodeOfEndpoint(key: string): number {
    return this.p.placement.nodeOf.get(key) ?? 0;
  }

  /** The node a side runs on: an endpoint's own; host and outside addresses: the other side's node. */
  nodeFor(side: Side, other?: Side): ScratchNode {
    const of = (x: Side | undefined): number | undefined =>
      x?.kind === "endpoint" ? this.nodeOfEndpoint(x.key) : undefined;
    const i = of(side) ?? of(other) ?? 0;
    const n = this.nodes[i];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  probe(side: Side, other?: Side): Promise<Probe> {
    return this.nodeFor(side, other).probe(side);
  }

  listen(side: Side, other: Side | undefined, transport: "tcp" | "udp", port: number, role: ListenerRole) {
    return this.nodeFor(side, other).listen(side, transport, port, role);
  }

  /** Sends the query from its source's node; drop and redirect logs are looked for on both nodes. */
  async send(plan: QueryPlan, timeoutMs: number): Promise<Observation> {
    if (this.destroyed) throw new Error("the scratch cluster was torn down (interrupted)");
    const src = this.nodeFor(plan.from, plan.to);
    const dst = this.nodeFor(plan.to, plan.from);
    const probe = await src.probe(plan.from);
    const l = listenerFor(plan);
    if (l) await dst.listen(plan.to, l[0], plan.port ?? 0, l[1]);
    const path = { from: nodeName(this.nodes.indexOf(src)), to: nodeName(this.nodes.indexOf(dst)) };
    // auth: false = the source identity's SVID withheld on every node (no pair can be made, whichever
    // node holds the first packet); true = valid: a held first packet waits for the handshake.
    const from = plan.from.kind === "endpoint" ? this.identityOfEndpoint(plan.from.key) : undefined;
    const auths = plan.auth === false && from !== undefined ? this.agents.flatMap((a) => (a.spiffe?.auth ? [a.spiffe.auth] : [])) : []; // prettier-ignore
    for (const a of auths) await a.revoke(from as number);
    const wait = plan.auth === true ? Math.max(timeoutMs, AUTH_WAIT_MS) : timeoutMs;
    try {
      if (src === dst) return { ...(await sendObserved(probe, plan, wait, [src])), path };
      const before = await underlayTx(src.nodeNetns);
      const seen = await sendObserved(probe, plan, wait, [src, dst]);
      const after = await underlayTx(src.nodeNetns);
      return { ...seen, path: { ...path, underlayPackets: after - before } };
    } finally {
      for (const a of auths) a.restore(from as number);
    }
  }

  /** The identity of a scenario endpoint (`namespace/name`) on its node, once created. */
  private identityOfEndpoint(key: string): number | undefined {
    const i = key.indexOf("/");
    try {
      return this.agentOf(this.nodeFor({ kind: "endpoint", key } as Side)).getEndpoint(key.slice(0, i), key.slice(i + 1)).identity; // prettier-ignore
    } catch {
      return undefined;
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.starting?.catch(() => undefined);
    for (const n of this.nodes) await n.destroy();
    await this.underlay?.destroy().catch(() => undefined);
    await cleanupPrefix(this.p.prefix).catch(() => undefined);
    await this.etcd?.stop().catch(() => undefined);
  }
}

/** Packets a node namespace sent on its underlay link (`ul0`, lab/underlay.ts). */
async function underlayTx(netns: string): Promise<number> {
  const out = await sh(netns, ["ip", "-s", "-j", "link", "show", "dev", "ul0"]);
  const j = JSON.parse(out) as { stats64?: { tx?: { packets?: number } } }[];
  const n = j[0]?.stats64?.tx?.packets;
  if (typeof n !== "number") throw new Error(`no packet counter of ul0 in ${netns}`);
  return n;
}

function canonical(ip: string): string {
  const a = parseAddr(ip);
  return a ? addrString(a.family, a.value) : ip;
}
