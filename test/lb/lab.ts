/**
 * A node namespace with endpoints for the load-balancing tests (needs root):
 * the membrane table (policy) and the LB table in the node, a probe in each
 * endpoint. Everything carries the run's own prefix ("hlb" + random) and goes in destroy().
 */
import { randomBytes } from "node:crypto";
import { createEndpoint, createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import { LbTable } from "../../src/datapath/lb-table.js";
import type { DatapathEndpoint, DatapathState, DirectionPolicy } from "../../src/datapath/types.js";
import { Probe } from "../../src/probe/probe.js";
import { Host } from "../datapath/harness.js";

export interface LbLabEndpoint extends Host {
  readonly id: number;
  readonly identity: number;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly hostIfname: string;
  readonly name: string;
}

const OPEN: DirectionPolicy = { enforced: false, segments: [] };

export class LbLab {
  private constructor(
    readonly prefix: string,
    readonly node: NamedNodeNetns,
    readonly nodeHost: Host,
    readonly endpoints: Map<string, LbLabEndpoint>,
    readonly reconciler: Reconciler,
    readonly lb: LbTable,
  ) {}

  /** Endpoints (name, id, identity; identity 0: a namespace the node does not manage, i.e. outside). */
  static async create(
    specs: readonly { name: string; id: number; identity: number }[],
    listenTcp: number[],
  ): Promise<LbLab> {
    const prefix = "hlb" + randomBytes(3).readUIntBE(0, 3).toString(36).slice(0, 4).padStart(4, "0");
    const probes: Probe[] = [];
    try {
      const node = await createNode({
        netns: `${prefix}-node`,
        gateway4: "10.201.0.1",
        gateway6: "fd00:201::1",
        podCidr4: "10.201.0.0/24",
        podCidr6: "fd00:201::/64",
      });
      const nodeProbe = Probe.start(node.netns);
      probes.push(nodeProbe);
      const eps = new Map<string, LbLabEndpoint>();
      await Promise.all(
        specs.map(async (s) => {
          const ipv4 = `10.201.0.${10 + s.id}`;
          const ipv6 = `fd00:201::${(10 + s.id).toString(16)}`;
          const hostIfname = `${prefix}h${s.id}`;
          const info = await createEndpoint({
            node,
            name: s.name,
            netns: `${prefix}-ep-${s.name}`,
            hostIfname,
            ipv4,
            ipv6,
          });
          const probe = Probe.start(info.netns);
          probes.push(probe);
          for (const port of listenTcp) await probe.request({ op: "listen", proto: "tcp", port });
          const host = new Host(info.netns, probe);
          eps.set(
            s.name,
            Object.assign(host, { id: s.id, identity: s.identity, ipv4, ipv6, hostIfname, name: s.name }),
          );
        }),
      );
      return new LbLab(
        prefix,
        node,
        new Host(node.netns, nodeProbe),
        eps,
        new Reconciler({ netns: node.netns, table: "membrane" }),
        new LbTable({
          netns: node.netns,
          table: "membrane_lb",
          localCidrs: ["10.201.0.0/24", "fd00:201::/64"],
        }),
      );
    } catch (e) {
      for (const p of probes) p.stop();
      await cleanupPrefix(prefix + "-");
      throw e;
    }
  }

  ep(name: string): LbLabEndpoint {
    const e = this.endpoints.get(name);
    if (!e) throw new Error(`no endpoint ${name}`);
    return e;
  }

  /** The managed endpoints (identity > 0) in the ipcache and the table; policies per name (default open). */
  state(
    policies: Record<string, { ingress?: DirectionPolicy; egress?: DirectionPolicy }> = {},
  ): DatapathState {
    const eps = [...this.endpoints.values()].filter((e) => e.identity > 0).sort((a, b) => a.id - b.id);
    const endpoints: DatapathEndpoint[] = eps.map((e) => ({
      id: e.id,
      name: e.name,
      hostIfname: e.hostIfname,
      ipv4: e.ipv4,
      ipv6: e.ipv6,
      identity: e.identity,
      ingress: policies[e.name]?.ingress ?? OPEN,
      egress: policies[e.name]?.egress ?? OPEN,
    }));
    return {
      hostIdentity: 1,
      rules: [{ id: 1, text: "lb-test rule" }],
      services: true, // this lab always translates (compile-lb-policy.ts)
      ipcache: eps.flatMap((e) => [
        { prefix: `${e.ipv4}/32`, identity: e.identity },
        { prefix: `${e.ipv6}/128`, identity: e.identity },
      ]),
      endpoints,
    };
  }

  async destroy(): Promise<void> {
    this.lb.stop();
    this.nodeHost.agent.stop();
    for (const e of this.endpoints.values()) e.agent.stop();
    await cleanupPrefix(this.prefix + "-");
  }
}
