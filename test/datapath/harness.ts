/**
 * Test helpers for the datapath: a node namespace with endpoints, a probe
 * (src/probe) in each, raw packet sending and per-namespace counters.
 *
 *   const lab = await Lab.create("tr", [{name: "a", id: 1, identity: 1001}, ...]);
 *   try { await lab.reconciler.apply(lab.state({...})); await lab.ep("a").tcp(addr, 80) }
 *   finally { await lab.destroy() }           // removes every namespace with the lab's prefix
 *
 * Each Lab has its own random prefix, so test files can run in parallel.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  createEndpoint,
  createNode,
  type EndpointNetns,
  type NamedNodeNetns,
} from "../../src/datapath/endpoint.js";
import { runRaw } from "../../src/datapath/exec.js";
import { Probe } from "../../src/probe/probe.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathEndpoint, DatapathState, DirectionPolicy } from "../../src/datapath/types.js";

/** Why root-only tests must skip here, or undefined when they can run. */
export function rootSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, nftables)";
  for (const bin of ["ip", "nft", "socat", "ping"]) {
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0)
      return `needs ${bin} (apt-get install nftables iproute2 socat iputils-ping)`;
  }
  return undefined;
}

/** A prefix unique to this run: "mbt" + 4 random base36 chars + tag (interface names stay <= 15). */
export function uniquePrefix(tag: string): string {
  return "mbt" + randomBytes(3).readUIntBE(0, 3).toString(36).slice(0, 4).padStart(4, "0") + tag;
}

/** The probe process running in a namespace (src/probe): the same tool the demo uses. */
export type Agent = Probe;
export const Agent = { start: (netns: string): Probe => Probe.start(netns) };

export const TIMEOUT_MS = 400;

/** Something that can send traffic: an endpoint or the node itself. */
export class Host {
  constructor(
    readonly netns: string,
    readonly agent: Agent,
  ) {}
  /** Runs a command in this namespace; throws with its stderr when it fails. */
  async exec(argv: readonly string[]): Promise<string> {
    const r = await runRaw(argv, { netns: this.netns });
    if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }
  async tcp(host: string, port: number): Promise<string> {
    return String(await this.agent.request({ op: "tcp", host, port, timeoutMs: TIMEOUT_MS }));
  }
  async udp(host: string, port: number, bind?: string): Promise<string> {
    return String(
      await this.agent.request({ op: "udp", host, port, timeoutMs: TIMEOUT_MS, ...(bind ? { bind } : {}) }),
    );
  }
  async open(id: string, host: string, port: number): Promise<string> {
    return String(await this.agent.request({ op: "open", id, host, port, timeoutMs: TIMEOUT_MS }));
  }
  async send(id: string): Promise<string> {
    return String(await this.agent.request({ op: "send", id, timeoutMs: TIMEOUT_MS }));
  }
  async count(proto: "tcp" | "udp", port: number): Promise<number> {
    return Number(await this.agent.request({ op: "count", proto, port }));
  }
  async ping(host: string): Promise<string> {
    const r = await runRaw(["ping", "-c1", "-n", `-W${TIMEOUT_MS / 1000}`, host], { netns: this.netns });
    return r.status === 0 ? "ok" : "timeout";
  }
  /** Sends a raw transport payload (proto number) with the kernel adding the IP header. */
  async raw(dst: string, proto: number, payload: Buffer, bind?: string): Promise<void> {
    const v6 = dst.includes(":");
    const target = v6 ? `IP6-SENDTO:[${dst}]:${proto}` : `IP4-SENDTO:${dst}:${proto}`;
    const r = await runRaw(["socat", "-u", "-", target + (bind ? `,bind=${v6 ? `[${bind}]` : bind}` : "")], {
      netns: this.netns,
      stdin: payload,
    });
    if (r.status !== 0) throw new Error(`socat raw send failed: ${r.stderr}`);
  }
  /** Counts packets matching an nft expression arriving in this namespace (prerouting, before conntrack). */
  async addCounter(name: string, match: string): Promise<void> {
    const script = [
      "add table inet probe",
      "add chain inet probe pre { type filter hook prerouting priority -400; }",
      `add counter inet probe ${name}`,
      `add rule inet probe pre ${match} counter name ${name}`,
    ].join("\n");
    const r = await runRaw(["nft", "-f", "-"], { netns: this.netns, stdin: script + "\n" });
    if (r.status !== 0) throw new Error(`counter: ${r.stderr}`);
  }
  async readCounter(name: string): Promise<number> {
    const r = await runRaw(["nft", "-j", "list", "counter", "inet", "probe", name], { netns: this.netns });
    const m = /"packets":\s*(\d+)/.exec(r.stdout);
    if (!m) throw new Error(`counter ${name}: ${r.stderr}`);
    return Number(m[1]);
  }
}

export interface LabEndpoint extends Host {
  readonly info: EndpointNetns;
  readonly id: number;
  readonly identity: number;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface EndpointSpec {
  name: string;
  id: number;
  identity: number;
}

const OPEN: DirectionPolicy = { enforced: false, segments: [] };

export class Lab {
  private constructor(
    readonly prefix: string,
    readonly node: NamedNodeNetns,
    readonly nodeHost: Host,
    readonly endpoints: Map<string, LabEndpoint>,
    readonly reconciler: Reconciler,
  ) {}

  static async create(
    tag: string,
    specs: readonly EndpointSpec[],
    listen: { tcp?: number[]; udp?: number[] } = {},
  ): Promise<Lab> {
    const prefix = uniquePrefix(tag);
    const agents: Agent[] = [];
    try {
      const node = await createNode({
        netns: `${prefix}-node`,
        gateway4: "10.200.0.1",
        gateway6: "fd00:200::1",
        podCidr4: "10.200.0.0/24",
        podCidr6: "fd00:200::/64",
      });
      const nodeAgent = Agent.start(node.netns);
      agents.push(nodeAgent);
      const eps = new Map<string, LabEndpoint>();
      await Promise.all(
        specs.map(async (s) => {
          const ipv4 = `10.200.0.${10 + s.id}`;
          const ipv6 = `fd00:200::${(10 + s.id).toString(16)}`;
          const info = await createEndpoint({
            node,
            name: s.name,
            netns: `${prefix}-ep-${s.name}`,
            hostIfname: `${prefix}h${s.id}`,
            ipv4,
            ipv6,
          });
          const agent = Agent.start(info.netns);
          agents.push(agent);
          const host = new Host(info.netns, agent);
          for (const port of listen.tcp ?? []) await agent.request({ op: "listen", proto: "tcp", port });
          for (const port of listen.udp ?? []) await agent.request({ op: "listen", proto: "udp", port });
          eps.set(s.name, Object.assign(host, { info, id: s.id, identity: s.identity, ipv4, ipv6 }));
        }),
      );
      return new Lab(
        prefix,
        node,
        new Host(node.netns, nodeAgent),
        eps,
        new Reconciler({ netns: node.netns, table: "membrane" }),
      );
    } catch (e) {
      for (const a of agents) a.stop();
      await cleanupPrefix(prefix + "-");
      throw e;
    }
  }

  ep(name: string): LabEndpoint {
    const e = this.endpoints.get(name);
    if (!e) throw new Error(`no endpoint ${name}`);
    return e;
  }

  /** The desired state with every endpoint in the ipcache; policies per endpoint name (default: open). */
  state(
    policies: Record<string, { ingress?: DirectionPolicy; egress?: DirectionPolicy }> = {},
  ): DatapathState {
    const eps = [...this.endpoints.values()].sort((a, b) => a.id - b.id);
    const endpoints: DatapathEndpoint[] = eps.map((e) => ({
      id: e.id,
      name: e.info.name,
      hostIfname: e.info.hostIfname,
      ipv4: e.ipv4,
      ipv6: e.ipv6,
      identity: e.identity,
      ingress: policies[e.info.name]?.ingress ?? OPEN,
      egress: policies[e.info.name]?.egress ?? OPEN,
    }));
    return {
      hostIdentity: 1,
      rules: [],
      ipcache: eps.flatMap((e) => [
        { prefix: `${e.ipv4}/32`, identity: e.identity },
        { prefix: `${e.ipv6}/128`, identity: e.identity },
      ]),
      endpoints,
    };
  }

  async destroy(): Promise<void> {
    this.nodeHost.agent.stop();
    for (const e of this.endpoints.values()) e.agent.stop();
    await cleanupPrefix(this.prefix + "-");
  }
}
