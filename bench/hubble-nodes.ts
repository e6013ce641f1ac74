/**
 * The simulated nodes of the relay benchmark (bench/hubble.ts), in their own process: N rings,
 * each served by the agent's HubbleServer on a unix socket in DIR, filled at RATE flows/s per
 * node for SECONDS once "go" arrives on standard input; then one JSON line of what each node
 * pushed. Exits when standard input closes.
 *
 *   node dist/bench/hubble-nodes.js DIR NODES RATE SECONDS
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { HubbleServer } from "../src/observe/hubble/server.js";
import { FlowRing } from "../src/observe/ring.js";
import type { Flow } from "../src/observe/flow.js";
import { benchArgs } from "./cli.js";

export function benchFlow(ms: number, node: string, i: number): Flow {
  return {
    time: new Date(ms).toISOString(),
    uuid: randomUUID(),
    verdict: i % 10 === 0 ? "DROPPED" : "FORWARDED",
    IP: { source: `10.200.${i % 250}.${(i >> 8) % 250}`, destination: "10.200.1.2", ipVersion: "IPv4" },
    l4: { TCP: { source_port: 30000 + (i % 30000), destination_port: 80, flags: { SYN: true } } },
    source: {
      ID: 12,
      identity: 1000 + (i % 50),
      namespace: "default",
      labels: ["k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"],
      pod_name: `client-${i % 50}`,
    },
    destination: {
      ID: 7,
      identity: 2000,
      namespace: "default",
      labels: ["k8s:app=server"],
      pod_name: "server",
    },
    Type: "L3_L4",
    node_name: node,
    event_type: { type: 5 },
    traffic_direction: "INGRESS",
    policy_match_type: 2,
    is_reply: false,
    ingress_allowed_by: [{ name: "server", namespace: "default", kind: "CiliumNetworkPolicy", revision: 3 }],
    Summary: "TCP Flags: SYN",
  } as Flow;
}

async function main(): Promise<void> {
  const { args } = benchArgs({
    script: "hubble-nodes",
    measures: "Not a benchmark of its own: the simulated nodes of the relay benchmark (hubble.js runs it). NODES rings, each served by the agent's HubbleServer on a unix socket in DIR, filled at RATE flows/s per node for SECONDS once \"go\" arrives on standard input; then one JSON line of what each node pushed. Exits when standard input closes.", // prettier-ignore
    root: false,
    args: {
      usage: "DIR NODES RATE SECONDS",
      help: "the sockets' directory, nodes, flows/s per node, seconds",
      min: 4,
      max: 4,
      check: (a) => (a.slice(1).every((x) => Number(x) > 0) ? undefined : `${a.slice(1).join(" ")}: give positive NODES RATE SECONDS`), // prettier-ignore
    },
    flags: {},
  });
  const [dir = "", nodesArg, rateArg, secondsArg] = args;
  const nodes = Number(nodesArg);
  const rate = Number(rateArg);
  const seconds = Number(secondsArg);
  const rings: FlowRing[] = [];
  const servers: HubbleServer[] = [];
  for (let i = 1; i <= nodes; i++) {
    const ring = new FlowRing({ capacity: 65_536, nodeName: `n${i}` });
    const server = new HubbleServer({
      source: { nodeName: `n${i}`, version: "bench", ring },
      socketPath: join(dir, `n${i}.sock`),
    });
    await server.start();
    rings.push(ring);
    servers.push(server);
  }
  const lines = createInterface({ input: process.stdin });
  let started = false;
  lines.on("line", (l) => {
    if (l.trim() !== "go" || started) return;
    started = true;
    const pushed = rings.map(() => 0);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const timer = setInterval(() => {
      const elapsed = performance.now() - t0;
      const target = Math.floor((Math.min(elapsed, seconds * 1000) * rate) / 1000);
      const now = Date.now();
      rings.forEach((ring, n) => {
        for (; (pushed[n] as number) < target; pushed[n] = (pushed[n] as number) + 1)
          ring.pushFlow(benchFlow(now, `n${n + 1}`, pushed[n] as number), now);
      });
      if (elapsed >= seconds * 1000) {
        clearInterval(timer);
        const cpu = process.cpuUsage(cpu0);
        console.log(
          JSON.stringify({
            pushed,
            cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
            ringStats: rings.map((r) => r.stats()),
          }),
        );
      }
    }, 10);
  });
  lines.on("close", () => {
    void Promise.all(servers.map((s) => s.stop())).then(() => process.exit(0));
  });
  console.log("ready");
}

if (process.argv[1]?.endsWith("hubble-nodes.js")) void main();
