/**
 * Agents' Observer APIs without root: HubbleServer (the agent's own server code) over a FlowRing
 * per node, on unix sockets in a temp dir; and a client that reads a relay's stream as
 * protojson. For the relay tests and the relay benchmark.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HubbleServer } from "../../src/observe/hubble/server.js";
import { FlowRing } from "../../src/observe/ring.js";
import type { Flow } from "../../src/observe/flow.js";
import type { PeerAddress } from "../../src/relay/peer.js";

export interface FakeNode {
  readonly name: string;
  readonly socket: string;
  readonly ring: FlowRing;
  server: HubbleServer | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface FakeNodes {
  readonly dir: string;
  readonly nodes: readonly FakeNode[];
  readonly peers: readonly PeerAddress[];
  destroy(): Promise<void>;
}

/** `n` nodes n1..nN, each a ring of `capacity` served on `<dir>/<name>.sock`. */
export async function fakeNodes(n: number, capacity = 10_000, prefix = "hrl-"): Promise<FakeNodes> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const nodes: FakeNode[] = [];
  for (let i = 1; i <= n; i++) {
    const name = `n${i}`;
    const socket = join(dir, `${name}.sock`);
    const ring = new FlowRing({ capacity, nodeName: name });
    const node: FakeNode = {
      name,
      socket,
      ring,
      server: undefined,
      async start() {
        node.server = new HubbleServer({
          source: { nodeName: name, version: "test", ring },
          socketPath: socket,
        });
        await node.server.start();
      },
      async stop() {
        await node.server?.stop();
        node.server = undefined;
      },
    };
    await node.start();
    nodes.push(node);
  }
  return {
    dir,
    nodes,
    peers: nodes.map((x) => ({ name: x.name, target: `unix:${x.socket}`, tls: false })),
    async destroy() {
      for (const x of nodes) await x.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A small valid flow at `ms` with a fresh uuid (what the stream is checked by). */
export function flowAt(ms: number, node: string, verdict: "FORWARDED" | "DROPPED" = "FORWARDED"): Flow {
  return {
    time: new Date(ms).toISOString(),
    uuid: randomUUID(),
    verdict,
    ...(verdict === "DROPPED" ? { drop_reason_desc: "POLICY_DENIED" } : {}),
    IP: { source: "10.0.0.1", destination: "10.0.0.2", ipVersion: "IPv4" },
    l4: { TCP: { source_port: 40000, destination_port: 80, flags: { SYN: true } } },
    source: { identity: 1000, namespace: "default", labels: ["k8s:app=client"], pod_name: "client" },
    destination: { identity: 1001, namespace: "prod", labels: ["k8s:app=server"], pod_name: "server" },
    Type: "L3_L4",
    node_name: node,
    event_type: { type: 5 },
    traffic_direction: "INGRESS",
    is_reply: false,
    Summary: "TCP Flags: SYN",
  } as Flow;
}
