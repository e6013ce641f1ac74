/**
 * `membrane demo --gateway`: north-south traffic through a Gateway.
 *
 *   scratch node + agent (--gateway) -> endpoints echo-v1, echo-v2 (app=echo), Services v1, v2
 *   outside namespace (192.0.2.10, like a client on the internet)
 *     --HTTP--> Gateway listener (gateway namespace, identity ingress)
 *       --HTTPRoute: 80% v1 / 20% v2, /v2 -> v2 with a header added--> backends
 *   backend policy: only fromEntities [ingress] on 8080
 *   -> the split counted, one request shown as the backend saw it, the flows
 *
 * Nothing outside the scratch namespaces is touched; everything is removed at the end (also on Ctrl-C).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startAgent, type RunningAgent } from "../agent/run.js";
import { cleanupPrefix } from "../datapath/netns.js";
import { runRaw } from "../datapath/exec.js";
import { filterFromFlags, formatCompact } from "../observe/index.js";
import { table } from "./format.js";

export const DEMO_GATEWAY = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: membrane}
spec: {controllerName: membrane.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec:
  gatewayClassName: membrane
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: public}]
  rules:
  - backendRefs: [{name: v1, port: 8080, weight: 80}, {name: v2, port: 8080, weight: 20}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-canary, value: "true"}]}}]
    backendRefs: [{name: v2, port: 8080}]
`;

const BACKEND_POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: echo-from-gateway, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: echo}}
  ingress:
  - fromEntities: [ingress]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

const ECHO = `const n=process.argv[1];require("http").createServer((q,s)=>{s.setHeader("x-backend",n);s.end(JSON.stringify({backend:n,url:q.url,canary:q.headers["x-canary"]??null,from:q.socket.remoteAddress})+"\\n")}).listen(8080,()=>console.log("ready"))`;

const CLIENT = `const [u,n]=process.argv.slice(1);const h=require("http");const a=new h.Agent({keepAlive:true,maxSockets:1});const c={};let i=0;const one=()=>{if(i++>=+n){a.destroy();console.log(JSON.stringify(c));return}h.get(u,{agent:a},(s)=>{let b="";s.on("data",(d)=>(b+=d));s.on("end",()=>{const k=s.headers["x-backend"]||String(s.statusCode);c[k]=(c[k]||0)+1;c.last=b.trim();one()})}).on("error",(e)=>{c.error=e.code;one()})};one()`;

export async function runGatewayDemo(o: { readonly out: (s: string) => void }): Promise<number> {
  const prefix = "mbg" + randomBytes(2).toString("hex");
  const dir = await mkdtemp(join(tmpdir(), "membrane-demo-gw-"));
  const children: ChildProcess[] = [];
  let running: RunningAgent | undefined;
  const cleanup = async (): Promise<void> => {
    for (const c of children) if (c.pid !== undefined) try { process.kill(-c.pid, "SIGKILL"); } catch { /* gone */ } // prettier-ignore
    await running?.stop().catch(() => undefined);
    running = undefined;
    await cleanupPrefix(prefix).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  let mismatches = 0;
  try {
    const node = `${prefix}-node`;
    o.out(`Membrane demo: a Gateway (Gateway API) routing outside traffic to two weighted backends\n\n`);
    running = await startAgent(
      {
        stateDir: join(dir, "state"),
        socketPath: join(dir, "agent.sock"),
        nodeNetns: node,
        netnsPrefix: `${prefix}-`,
        podCidr4: "10.202.0.0/24",
        table: "membrane",
        logGroup: 1,
        engine: {},
        logLevel: "warn",
        resyncMs: 0,
        observe: { nodeName: node, ringCapacity: 4096 },
        gateway: { secretsDir: join(dir, "secrets") },
      },
      pino({ level: "warn" }, pino.destination(2)),
    );
    const agent = running.agent;
    const rows: string[][] = [["ENDPOINT", "LABELS", "ADDRESS", "IDENTITY", "SERVICE"]];
    for (const v of ["v1", "v2"]) {
      const ep = await agent.createEndpointRequest({
        name: `echo-${v}`,
        namespace: "default",
        labels: { app: "echo", version: v },
      });
      const c = spawn("ip", ["netns", "exec", ep.netns, process.execPath, "-e", ECHO, v], {
        detached: true,
        stdio: ["ignore", "pipe", "ignore"],
      });
      children.push(c);
      await new Promise<void>((resolve, reject) => {
        c.stdout.once("data", () => resolve());
        c.once("exit", () => reject(new Error(`the ${v} backend did not start`)));
      });
      await agent.upsertService({
        name: v,
        namespace: "default",
        selector: { version: v },
        ports: [{ port: 8080, protocol: "TCP" }],
      });
      rows.push([`default/echo-${v}`, `app=echo,version=${v}`, ep.ipv4, String(ep.identity), `${v}:8080`]);
    }
    o.out("Backends (endpoints selected by Services v1 and v2):\n" + indent(table(rows)) + "\n\n");
    o.out(
      "Step 1: apply the Gateway and its HTTPRoute (membrane apply -f):\n" +
        indent(DEMO_GATEWAY.trimEnd().split("\n")) +
        "\n",
    );
    const gw = agent.gateways;
    if (!gw) throw new Error("the gateway is off");
    await gw.apply(DEMO_GATEWAY, "gateway.yaml");
    const address = gw.address ?? "";
    o.out(
      `  -> Gateway default/public programmed on ${address}:80 (its namespace ${prefix}-gateway; the address has identity 8, reserved:ingress)\n\n`,
    );
    o.out(
      "Step 2: only the gateway may reach the backends (backend ingress policy):\n" +
        indent(BACKEND_POLICY.trimEnd().split("\n")) +
        "\n",
    );
    await agent.applyPolicies(BACKEND_POLICY, "backend.yaml");
    await gw.refresh();
    const out = `${prefix}-out`;
    const ip = (args: string[]): Promise<unknown> => runRaw(["ip", ...args]);
    await ip(["netns", "add", out]);
    await ip(["-n", node, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", out]);
    await ip(["-n", node, "addr", "add", "192.0.2.1/24", "dev", "out0"]);
    await ip(["-n", node, "link", "set", "out0", "up"]);
    await ip(["-n", out, "link", "set", "eth0", "up"]);
    await ip(["-n", out, "addr", "add", "192.0.2.10/24", "dev", "eth0"]);
    await ip(["-n", out, "route", "add", "default", "via", "192.0.2.1"]);
    const get = (path: string, n: number): Record<string, unknown> => {
      const r = spawnSync(
        "ip",
        ["netns", "exec", out, process.execPath, "-e", CLIENT, `http://${address}${path}`, String(n)],
        { encoding: "utf8", timeout: 60_000 },
      );
      return JSON.parse(r.stdout || "{}") as Record<string, unknown>;
    };
    o.out(`\nStep 3: 100 requests from an outside namespace (192.0.2.10) to http://${address}/:\n`);
    const split = get("/", 100);
    const v1 = Number(split["v1"] ?? 0);
    const v2 = Number(split["v2"] ?? 0);
    o.out(
      indent(
        table([
          ["BACKEND", "REQUESTS", "WEIGHT"],
          ["v1", String(v1), "80"],
          ["v2", String(v2), "20"],
        ]),
      ) + "\n",
    );
    if (v1 + v2 !== 100 || v1 < 65 || v1 > 95) mismatches++;
    const canary = get("/v2/hello", 1);
    o.out(
      `\nStep 4: GET /v2/hello goes to v2 with the header the route adds; the backend saw:\n  ${String(canary["last"])}\n`,
    );
    if (canary["v2"] !== 1) mismatches++;
    await new Promise((r) => setTimeout(r, 300));
    const flows = agent.observer?.read(filterFromFlags({ last: 6, type: ["l7"] })) ?? [];
    o.out("\nFlows (membrane observe --type l7 --last 6): world -> gateway -> backend, HTTP status\n");
    o.out((flows.length ? indent(flows.map((r) => formatCompact(r, {}))) : "  (none)") + "\n");
    o.out(
      mismatches === 0
        ? "\nEverything went as the Gateway API says.\n"
        : `\n${mismatches} outcomes differed from what the routes say.\n`,
    );
  } finally {
    process.removeListener("SIGINT", onSignal);
    await cleanup();
  }
  return mismatches;
}

function indent(lines: string | readonly string[]): string {
  return (typeof lines === "string" ? lines.split("\n") : lines).map((l) => "  " + l).join("\n");
}
