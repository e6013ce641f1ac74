/**
 * `membrane demo`: Cilium's Star Wars getting-started, on real packets.
 *
 *   scratch node netns + agent (in-process, temp state)
 *     -> endpoints deathstar, tiefighter, xwing (network namespaces)
 *     -> traffic with no policy, then with the L3/L4 policy
 *     -> who reached whom, what was dropped and why
 *     -> a TracingPolicy kills a deathstar process reading /etc/shadow (demo-runtime.ts)
 *     -> everything removed (also on Ctrl-C)
 *
 * Nothing outside the scratch namespaces is touched.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startAgent, type RunningAgent } from "../agent/run.js";
import { cleanupPrefix } from "../datapath/netns.js";
import { MembraneError } from "../errors.js";
import { Probe } from "../probe/probe.js";
import { filterFromFlags, formatCompact } from "../observe/index.js";
import { flowQuery } from "../agent/routes.js";
import type { Flow } from "../observe/flow.js";
import { originText } from "../policy/decide.js";
import { explainDrop } from "../policy/why.js";
import type { Decision } from "../policy/query.js";
import { table } from "./format.js";
import { runtimeStep } from "./demo-runtime.js";

export const STARWARS_L3L4 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: rule1
  namespace: default
spec:
  description: "L3-L4 policy to restrict deathstar access to empire ships only"
  endpointSelector:
    matchLabels:
      org: empire
      class: deathstar
  ingress:
  - fromEndpoints:
    - matchLabels:
        org: empire
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
`;

/** rule1 with an HTTP rule: Cilium's sw_l3_l4_l7_policy.yaml. */
export const STARWARS_L7 = STARWARS_L3L4.replace(
  'description: "L3-L4 policy to restrict deathstar access to empire ships only"',
  'description: "L7 policy to restrict access to specific HTTP call"',
).replace(
  "        protocol: TCP\n",
  `        protocol: TCP
      rules:
        http:
        - method: "POST"
          path: "/v1/request-landing"
`,
);

interface HttpAttempt {
  readonly from: string;
  readonly method: string;
  readonly path: string;
  /** "200", "403", or "dropped" (the kernel drops the connection at L3/L4). */
  readonly expect: string;
}

const ATTEMPTS_L7: readonly HttpAttempt[] = [
  { from: "tiefighter", method: "POST", path: "/v1/request-landing", expect: "200" },
  { from: "tiefighter", method: "PUT", path: "/v1/exhaust-port", expect: "403" },
  { from: "xwing", method: "POST", path: "/v1/request-landing", expect: "dropped" },
];

export interface Attempt {
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly expect: "allow" | "deny";
}

export const ATTEMPTS_OPEN: readonly Attempt[] = [
  { from: "tiefighter", to: "deathstar", port: 80, expect: "allow" },
  { from: "xwing", to: "deathstar", port: 80, expect: "allow" },
];
export const ATTEMPTS_L3L4: readonly Attempt[] = [
  { from: "tiefighter", to: "deathstar", port: 80, expect: "allow" },
  { from: "xwing", to: "deathstar", port: 80, expect: "deny" },
  { from: "tiefighter", to: "deathstar", port: 8080, expect: "deny" },
  { from: "deathstar", to: "xwing", port: 80, expect: "allow" },
];

export interface DemoOptions {
  readonly out: (s: string) => void;
  readonly keep?: boolean;
}

/** Runs the demo; returns the number of attempts whose outcome differed from what Cilium would do. */
export async function runDemo(o: DemoOptions): Promise<number> {
  preflight();
  const prefix = "mbd" + randomBytes(2).toString("hex");
  const dir = await mkdtemp(join(tmpdir(), "membrane-demo-"));
  const probes = new Map<string, Probe>();
  let running: RunningAgent | undefined;
  let interrupted = false;
  const cleanup = async (): Promise<void> => {
    for (const p of probes.values()) p.stop();
    probes.clear();
    await running?.stop().catch(() => undefined);
    running = undefined;
    await cleanupPrefix(prefix).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    interrupted = true;
    o.out("\ninterrupted: cleaning up ...\n");
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let mismatches = 0;
  try {
    const node = `${prefix}-node`;
    o.out(`Membrane demo: Cilium's Star Wars, enforced by nftables on real packets\n`);
    o.out(`scratch node namespace ${node}, state in ${dir}\n\n`);
    running = await startAgent(
      {
        stateDir: join(dir, "state"),
        socketPath: join(dir, "agent.sock"),
        nodeNetns: node,
        netnsPrefix: `${prefix}-`,
        podCidr4: "10.201.0.0/24",
        table: "membrane",
        logGroup: 1,
        engine: {},
        logLevel: "warn",
        resyncMs: 0,
        observe: { nodeName: node, ringCapacity: 4096 },
        proxy: { gid: 1337, uid: 1337, l7Port: 15001, dnsPort: 15053 },
      },
      pino({ level: "warn" }, pino.destination(2)),
    );
    const agent = running.agent;
    const eps = [
      { name: "deathstar", labels: { org: "empire", class: "deathstar" } },
      { name: "tiefighter", labels: { org: "empire", class: "tiefighter" } },
      { name: "xwing", labels: { org: "alliance", class: "xwing" } },
    ];
    const rows: string[][] = [["ENDPOINT", "LABELS", "ADDRESS", "IDENTITY"]];
    const addr = new Map<string, string>();
    for (const e of eps) {
      const v = await agent.createEndpointRequest({ name: e.name, namespace: "default", labels: e.labels });
      addr.set(e.name, v.ipv4);
      const p = Probe.start(v.netns);
      probes.set(e.name, p);
      await p.listenHttp(80);
      await p.listen("tcp", 8080);
      rows.push([
        `default/${e.name}`,
        Object.entries(e.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(","),
        v.ipv4,
        String(v.identity),
      ]);
    }
    o.out("Endpoints (each a network namespace with a veth to the node):\n");
    o.out(indent(table(rows)) + "\n\n");

    const attempt = async (title: string, list: readonly Attempt[]): Promise<void> => {
      o.out(title + "\n");
      const out: string[][] = [["FROM", "TO", "RESULT", "WHY"]];
      for (const a of list) {
        const r = await (probes.get(a.from) as Probe).tcp(addr.get(a.to) as string, a.port, 600);
        const got = r === "ok" ? "allow" : r === "timeout" ? "deny" : "error";
        const d = agent.engine.decide({
          from: { kind: "endpoint", name: a.from, namespace: "default" },
          to: { kind: "endpoint", name: a.to, namespace: "default" },
          proto: "TCP",
          port: a.port,
        });
        if (got !== a.expect) mismatches++;
        out.push([
          a.from,
          `${a.to}:${a.port}/TCP`,
          got === "allow" ? "reached" : got === "deny" ? "DROPPED" : `error (${r})`,
          why(d) +
            (got !== a.expect ? `   <-- expected ${a.expect === "allow" ? "reached" : "DROPPED"}` : ""),
        ]);
      }
      o.out(indent(table(out)) + "\n\n");
    };

    await attempt("Step 1: no policy. Every ship can land:", ATTEMPTS_OPEN);
    o.out("Step 2: apply rule1 (only org=empire may reach the deathstar, on TCP/80):\n");
    o.out(indent(STARWARS_L3L4.trimEnd().split("\n")) + "\n");
    const rep = await agent.applyPolicies(STARWARS_L3L4, "rule1.yaml");
    o.out(
      `  -> enforced in the kernel in ${rep.enforcedMs} ms (${rep.kernelOps} nftables changes in one transaction)\n\n`,
    );
    await attempt("Step 3: traffic under rule1:", ATTEMPTS_L3L4);
    // The kernel's verdict log reaches the flow ring asynchronously: give it a moment.
    await new Promise((r) => setTimeout(r, 300));
    const drops = agent.observer?.read(filterFromFlags({ verdict: ["DROPPED"] })) ?? [];
    o.out("Flows the kernel reported (membrane observe --verdict DROPPED):\n");
    o.out(drops.length ? indent(drops.map((r) => formatCompact(r, {}))) + "\n\n" : "  (none)\n\n");
    const forwarded = agent.observer?.read(filterFromFlags({ verdict: ["FORWARDED"] })) ?? [];
    o.out("and the policy verdicts of allowed new connections (membrane observe --verdict FORWARDED):\n");
    o.out(forwarded.length ? indent(forwarded.map((r) => formatCompact(r, {}))) + "\n\n" : "  (none)\n\n");
    const diff = await agent.datapathDiff();
    o.out(`Kernel vs desired state: ${diff.length === 0 ? "in sync" : `${diff.length} differences`}\n`);
    o.out("Step 4: replace rule1 with its L7 version (empire ships may only POST /v1/request-landing):\n");
    o.out(indent(STARWARS_L7.trimEnd().split("\n").slice(-9)) + "\n");
    const rep7 = await agent.applyPolicies(STARWARS_L7, "rule1-l7.yaml");
    o.out(
      `  -> enforced in ${rep7.enforcedMs} ms: TCP/80 to the deathstar is now redirected to the node's L7 proxy\n\n`,
    );
    const out7: string[][] = [["FROM", "REQUEST", "RESULT", "EXPECTED (Cilium)"]];
    for (const a of ATTEMPTS_L7) {
      const r = await (probes.get(a.from) as Probe).http(
        addr.get("deathstar") as string,
        80,
        { method: a.method, path: a.path },
        1000,
      );
      const got = r === "timeout" ? "dropped" : r;
      if (got !== a.expect) mismatches++;
      const text = (x: string): string =>
        x === "200" ? "200 OK" : x === "403" ? "403 Access denied" : x === "dropped" ? "DROPPED (L3/L4)" : x;
      out7.push([
        a.from,
        `${a.method} ${a.path}`,
        text(got),
        text(a.expect) + (got !== a.expect ? "   <-- differs" : ""),
      ]);
    }
    o.out("Step 5: HTTP requests under the L7 rule:\n" + indent(table(out7)) + "\n\n");
    await new Promise((r) => setTimeout(r, 300));
    const l7 = agent.observer?.read(filterFromFlags({ type: ["l7"] })) ?? [];
    o.out("L7 flows from the proxy (membrane observe --type l7):\n");
    o.out(l7.length ? indent(l7.map((r) => formatCompact(r, {}))) + "\n\n" : "  (none)\n\n");
    const denied = l7.flatMap((r) => ("flow" in r && r.flow.verdict === "DROPPED" ? [r.flow] : []));
    const q = denied.length > 0 ? flowQuery(denied[denied.length - 1] as Flow) : undefined;
    if (q) {
      o.out("Why was that dropped? (membrane policy why --type l7)\n");
      o.out(indent(explainDrop(agent.engine, q).lines) + "\n\n");
    }
    mismatches += await runtimeStep(agent, o.out);
    o.out(
      mismatches === 0
        ? "Every attempt ended as Cilium would have it.\n"
        : `${mismatches} attempts did not end as expected.\n`,
    );
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!interrupted) {
      if (o.keep)
        o.out(
          `kept: node namespace ${prefix}-node and endpoints (${prefix}-*); remove with: ip netns list | grep ${prefix}\n`,
        );
      else {
        await cleanup();
        o.out("cleaned up: namespaces, nftables table and state removed\n");
      }
    }
  }
  return mismatches;
}

function why(d: Decision): string {
  const side = d.egress.verdict === "deny" ? d.egress : d.ingress;
  if (d.verdict === "allow") {
    const by = [...d.egress.decidedBy, ...d.ingress.decidedBy].map(originText);
    return by.length ? `allowed by ${by.join(", ")}` : "no policy selects either side";
  }
  if (side.reason === "default-deny")
    return `${side.direction} of ${side.endpoint ?? "?"}: default deny, no rule allows it`;
  return `${side.direction} of ${side.endpoint ?? "?"}: ${side.reason ?? "denied"} by ${side.decidedBy.map(originText).join(", ")}`;
}

export function indent(lines: readonly string[]): string {
  return lines.map((l) => "  " + l).join("\n");
}

export function preflight(): void {
  if (process.getuid?.() !== 0) {
    throw new MembraneError(
      "CLI_USAGE",
      "Cannot run the demo: it creates network namespaces and nftables tables, which needs root",
      {
        hint: "run it with sudo",
      },
    );
  }
  for (const bin of ["ip", "nft"]) {
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0) {
      throw new MembraneError("CLI_USAGE", `Cannot run the demo: \`${bin}\` is not installed`, {
        hint: "install the system packages: sudo bash scripts/install-system-deps.sh",
      });
    }
  }
}
