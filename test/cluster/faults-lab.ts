// Shared pieces of the fault tests (issue 11 item 6): in-process cluster nodes (an AgentLab each, in
// cluster mode, its node namespace joined to an underlay bridge), a long-lived TCP connection that
// keeps exchanging data through a fault, and the verdicts of new connections.
//
//   etcd(s) <── ClusterSession ── node a (AgentLab) ─ul0─┐
//                                 node b (AgentLab) ─ul0─┴─ br0 (underlay namespace)
//   client(a) ══ Flow: one TCP connection, a round trip every 200 ms ══> server(b):80
//
// Every namespace, veth and nft table carries the prefix "mbt<rand>ft…" (uniquePrefix).
import assert from "node:assert/strict";
import type { ClusterOptions } from "../../src/cluster/session.js";
import { Underlay } from "../../src/lab/underlay.js";
import { AgentLab, SERVER_FROM_CLIENT, T, type LabEndpoint } from "../agent/e2e/harness.js";
import { uniquePrefix } from "../datapath/harness.js";

export { SERVER_FROM_CLIENT, T };

/** The shared wait (a safety net of 30 s by default; what it returns goes in report lines, never in assertions). */
export { until } from "../support/until.js";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Node i's underlay address (Underlay.node(i + 1) on net 31). */
export const nodeIp = (i: number): string => `172.31.0.${i + 2}`;

export interface InProcessNodes {
  readonly labs: AgentLab[];
  readonly names: string[];
  readonly underlay: Underlay;
  destroy(): Promise<void>;
}

/**
 * Starts `n` in-process agents in cluster mode on `endpoints` (pod CIDR 10.24<i>.0.0/24, lease `ttl` s,
 * native routing), each in a node namespace on one underlay. Node names: ft-<tag>-a, -b, ...
 */
export async function startNodes(
  tag: string,
  endpoints: readonly string[],
  n: number,
  ttl = 5,
): Promise<InProcessNodes> {
  const underlay = await Underlay.create(uniquePrefix(`ft${tag}`));
  const labs: AgentLab[] = [];
  const names: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const lab of labs) await lab.destroy();
    await underlay.destroy();
  };
  try {
    for (let i = 0; i < n; i++) {
      const name = `ft-${tag}-${"abcdef"[i]}`;
      const podCidr4 = `10.24${i}.0.0/24`;
      const cluster: ClusterOptions = {
        endpoints,
        node: name,
        nodeIp: { ipv4: nodeIp(i) },
        labels: {},
        podCidrs: { configured: { ipv4: podCidr4 } },
        leaseTtlSeconds: ttl,
        tunnel: "native",
      };
      const lab = await AgentLab.prepare(`ft${tag}${i}`, { podCidr4, cluster });
      labs.push(lab);
      names.push(name);
      const u = await underlay.node(i + 1, { netns: lab.node, podCidr: podCidr4 });
      assert.equal(u.ip, nodeIp(i));
      await lab.startAgent();
    }
  } catch (e) {
    await destroy();
    throw e;
  }
  return { labs, names, underlay, destroy };
}

/** Whether `lab`'s agent has `ip` as a remote endpoint (learnt from the cluster ipcache). */
export const knows = (lab: AgentLab, ip: string): boolean =>
  lab.agent.remoteEndpoints.list().some((r) => r.ip === ip);

/** The identity `lab`'s ipcache gives `ip`/32 (undefined: not in it). */
export const ipcacheId = (lab: AgentLab, ip: string): number | undefined =>
  lab.agent.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity;

let flows = 0;

/** One TCP connection kept open, exchanging a round trip every `everyMs` until stopped. */
export class Flow {
  sends = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  private constructor(
    private readonly from: LabEndpoint,
    readonly id: string,
    everyMs: number,
  ) {
    this.loop = (async () => {
      while (!this.stopped) {
        // A generous timeout: a slow round trip on a loaded machine is not a failure; a drop is.
        const r = await this.from.probe.send(this.id, 5000);
        this.sends++;
        if (r !== "ok") this.failures.push(`${new Date().toISOString()} ${r}`);
        await sleep(everyMs);
      }
    })();
  }

  static async open(from: LabEndpoint, ip: string, port: number, everyMs = 200): Promise<Flow> {
    const id = `flow${++flows}`;
    const r = await from.probe.open(id, ip, port, 5000);
    assert.equal(r, "ok", `the long-lived connection to ${ip}:${port} opens`);
    return new Flow(from, id, everyMs);
  }

  /** Stops the loop; asserts that every round trip went through and that there were at least `min`. */
  async stop(min = 1): Promise<number> {
    this.stopped = true;
    await this.loop;
    assert.deepEqual(this.failures, [], `every round trip of the long-lived connection went through`);
    assert.ok(this.sends >= min, `${this.sends} round trips (at least ${min})`);
    return this.sends;
  }
}

/**
 * New connections decided as before: client -> server:80 allowed, intruder -> server:80 and
 * client -> server:8080 dropped (SERVER_FROM_CLIENT, server listening on 80 and 8080).
 */
export async function checkVerdicts(
  where: string,
  client: LabEndpoint,
  intruder: LabEndpoint,
  serverIp: string,
): Promise<void> {
  assert.deepEqual(
    [
      await client.probe.tcp(serverIp, 80, 3000),
      await intruder.probe.tcp(serverIp, 80, T),
      await client.probe.tcp(serverIp, 8080, T),
    ],
    ["ok", "timeout", "timeout"],
    `${where}: client -> server:80 allowed, intruder -> :80 and client -> :8080 dropped`,
  );
}

/** Load average (1 min), to print beside a figure. */
export async function loadavg(): Promise<string> {
  const { loadavg: la } = await import("node:os");
  return la()[0]?.toFixed(1) ?? "?";
}
