/**
 * End-to-end helpers for the node agent: a real agent (in-process through
 * startAgent, or as a separate `membrane agent` process) on a scratch node
 * namespace, endpoints created through it, and probes sending real packets.
 *
 *   const lab = await AgentLab.start("sw", {engine: {...}});
 *   try { const t = await lab.endpoint("tiefighter", {org: "empire"}); await t.probe.tcp(addr, 80) }
 *   finally { await lab.destroy() }     // stops the agent, removes every namespace of the prefix, the temp dir
 *
 * Every lab has its own prefix (node netns `<prefix>-node`, endpoints
 * `<prefix>-ep<id>`), nftables table and state directory, so files can run in
 * parallel and never touch the root namespace.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import pino from "pino";
import type { EndpointView } from "../../../src/agent/agent.js";
import { startAgent, type AgentOptions, type RunningAgent } from "../../../src/agent/run.js";
import { runRaw } from "../../../src/datapath/exec.js";
import { cleanupPrefix } from "../../../src/datapath/netns.js";
import type { Flow } from "../../../src/observe/flow.js";
import { filterFromFlags, type ObserveFlags } from "../../../src/observe/index.js";
import type { EngineConfig } from "../../../src/policy/query.js";
import { Probe } from "../../../src/probe/probe.js";
import { rootSkipReason, uniquePrefix } from "../../datapath/harness.js";
import { until } from "../../support/until.js";

export { rootSkipReason };

/** Probe timeout for "dropped" verdicts: long enough for a veth round trip on a busy 2-core box. */
export const T = 600;

/** The server (app: server) takes TCP/80 from the client (app: client) only. */
export const SERVER_FROM_CLIENT = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

/** The outside namespace's IPv6 link (outsideNamespace): the node's end and the outside's. */
export const OUTSIDE6 = { node: "2001:db8:ff::1", outside: "2001:db8:ff::10" } as const;

export interface LabOptions {
  readonly podCidr4?: string;
  /** Dual stack: the IPv6 pod CIDR. */
  readonly podCidr6?: string;
  readonly engine?: Partial<EngineConfig>;
  /** Run the L7 proxy (and flows, to see its events). */
  readonly proxy?: boolean;
  /** Proxy processes (proxy/runtime/workers.ts); default 1. */
  readonly proxyWorkers?: number;
  /** Watch a Kubernetes API (test/k8s: the recorded one). */
  readonly k8s?: AgentOptions["k8s"];
  /** Record runtime events (process exec/exit, src/runtime). */
  readonly runtime?: boolean;
  /** Cluster mode (test/cluster): the shared etcd, the node's lease and name. */
  readonly cluster?: AgentOptions["cluster"];
  /** The SPIFFE provider and Workload API (test/spiffe). */
  readonly spiffe?: AgentOptions["spiffe"];
  /** Gateway API and Ingress (test/gateway), with flows; secrets in `<dir>/secrets`; an object: these settings too. */
  readonly gateway?: boolean | { readonly addressLeaseTtlSeconds?: number };
  /** Flows without the proxy (test/auth). */
  readonly observe?: boolean;
  /** Services' address pools (test/lb: a dual-stack --service-cidr). */
  readonly lb?: AgentOptions["lb"];
}

export interface LabEndpoint {
  readonly view: EndpointView;
  readonly probe: Probe;
  readonly ip: string;
}

/** One JSON log line of the agent. */
export type LogLine = Record<string, unknown>;

export class AgentLab {
  readonly endpoints = new Map<string, LabEndpoint>();
  /** Every log line of the in-process agent (all runs). */
  readonly logs: LogLine[] = [];
  running: RunningAgent | undefined;
  private readonly extraProbes: Probe[] = [];

  private constructor(
    readonly prefix: string,
    readonly dir: string,
    readonly options: AgentOptions,
  ) {}

  /** A lab with no agent running yet (for labs that run the agent as a separate process). */
  static async prepare(tag: string, o: LabOptions = {}): Promise<AgentLab> {
    const prefix = uniquePrefix(tag);
    const dir = await mkdtemp(join(tmpdir(), `membrane-e2e-${tag}-`));
    return new AgentLab(prefix, dir, {
      stateDir: join(dir, "state"),
      socketPath: join(dir, "agent.sock"),
      nodeNetns: `${prefix}-node`,
      netnsPrefix: `${prefix}-`,
      podCidr4: o.podCidr4 ?? "10.210.0.0/24",
      ...(o.podCidr6 !== undefined ? { podCidr6: o.podCidr6 } : {}),
      table: `m${prefix}`,
      logGroup: 1,
      engine: o.engine ?? {},
      logLevel: "info",
      resyncMs: 0,
      ...(o.k8s ? { k8s: o.k8s } : {}),
      ...(o.lb ? { lb: o.lb } : {}),
      ...(o.runtime ? { runtime: { nodeName: prefix } } : {}),
      ...(o.cluster ? { cluster: o.cluster } : {}),
      ...(o.spiffe ? { spiffe: o.spiffe } : {}),
      ...(o.gateway
        ? {
            gateway: {
              secretsDir: join(dir, "secrets"),
              ...(typeof o.gateway === "object" ? o.gateway : {}),
            },
            observe: { nodeName: prefix, ringCapacity: 4096 },
          }
        : {}),
      ...(o.observe && !o.proxy && !o.gateway ? { observe: { nodeName: prefix, ringCapacity: 4096 } } : {}),
      ...(o.proxy
        ? {
            // A short minimum TTL, so that expiry can be seen within a test.
            proxy: {
              gid: 1337,
              uid: 1337,
              l7Port: 15001,
              dnsPort: 15053,
              ...(o.proxyWorkers !== undefined ? { workers: o.proxyWorkers } : {}),
              dnsMinTtlSeconds: 2,
              dnsGcIntervalMs: 200,
            },
            observe: { nodeName: prefix, ringCapacity: 4096 },
          }
        : {}),
    });
  }

  /** A lab with an in-process agent started. */
  static async start(tag: string, o: LabOptions = {}): Promise<AgentLab> {
    const lab = await AgentLab.prepare(tag, o);
    try {
      await lab.startAgent();
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  get node(): string {
    return this.options.nodeNetns as string;
  }

  get agent(): RunningAgent["agent"] {
    if (!this.running) throw new Error("the agent is not running");
    return this.running.agent;
  }

  /** Starts the agent in this process; its log lines go to `logs`. */
  async startAgent(): Promise<void> {
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const line of chunk.toString("utf8").split("\n")) {
          if (line.trim() !== "") this.logs.push(JSON.parse(line) as LogLine);
        }
        cb();
      },
    });
    this.running = await startAgent(this.options, pino({ level: "info" }, sink));
  }

  async stopAgent(): Promise<void> {
    const r = this.running;
    this.running = undefined;
    await r?.stop();
  }

  /** Creates an endpoint through the agent and starts a probe in it listening on `tcp`/`udp` ports. */
  async endpoint(
    name: string,
    labels: Record<string, string>,
    listen: { tcp?: readonly number[]; udp?: readonly number[]; namespace?: string } = {},
  ): Promise<LabEndpoint> {
    const view = await this.agent.createEndpointRequest({
      name,
      namespace: listen.namespace ?? "default",
      labels,
    });
    return this.attach(view, listen);
  }

  /** Starts a probe in an endpoint that exists (e.g. created by a separate agent process). */
  async attach(
    view: EndpointView,
    listen: { tcp?: readonly number[]; udp?: readonly number[] } = {},
  ): Promise<LabEndpoint> {
    const probe = Probe.start(view.netns);
    const ep = { view, probe, ip: view.ipv4 };
    this.endpoints.set(view.name, ep);
    for (const p of listen.tcp ?? []) await probe.listen("tcp", p);
    for (const p of listen.udp ?? []) await probe.listen("udp", p);
    return ep;
  }

  ep(name: string): LabEndpoint {
    const e = this.endpoints.get(name);
    if (!e) throw new Error(`no endpoint ${name}`);
    return e;
  }

  /**
   * The agent's flows matching `flags` once `ok` holds for them. Flows reach the observer after the packet or
   * request they describe (NFLOG, the proxy's events over IPC, batched per turn): read right after the traffic,
   * the newest may not be there yet. The bound is a safety net; giving up says what was seen.
   */
  async flowsWhen(flags: ObserveFlags, ok: (flows: Flow[]) => boolean, what: string): Promise<Flow[]> {
    const read = (): Flow[] =>
      (this.agent.observer?.read(filterFromFlags(flags)) ?? []).flatMap((r) => ("flow" in r ? [r.flow] : []));
    let flows: Flow[] = [];
    await until(what, () => ok((flows = read())), {
      detail: () =>
        flows
          .slice(-8)
          .map((f) => JSON.stringify(f).slice(0, 400))
          .join("\n"),
    });
    return flows;
  }

  /** A probe in any namespace of this lab (stopped by destroy()). */
  probeIn(netns: string): Probe {
    if (!netns.startsWith(this.prefix)) throw new Error(`${netns} is not a namespace of this lab`);
    const p = Probe.start(netns);
    this.extraProbes.push(p);
    return p;
  }

  /** Runs a command in one of this lab's namespaces; throws with stderr when it fails. */
  async sh(netns: string, argv: readonly string[]): Promise<string> {
    if (!netns.startsWith(this.prefix)) throw new Error(`${netns} is not a namespace of this lab`);
    const r = await runRaw(argv, { netns });
    if (r.status !== 0) throw new Error(`${argv.join(" ")} in ${netns}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /**
   * Runs `ip ARGS` on this lab's namespaces only: `-n <ns>` or `netns add|del <ns>` with a lab name.
   * Throws with stderr when it fails.
   */
  async ip(args: readonly string[]): Promise<string> {
    const ns = args[0] === "-n" ? args[1] : args[0] === "netns" ? args[2] : undefined;
    if (ns === undefined || !ns.startsWith(this.prefix)) {
      throw new Error(`ip ${args.join(" ")}: not confined to a namespace of this lab`);
    }
    const r = await runRaw(["ip", ...args]);
    if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /**
   * An "outside" namespace `<prefix>-out` wired to the node like an uplink:
   *   node out0 192.0.2.1/24 <── veth ──> eth0 192.0.2.10/24 + `extra` addresses
   *   node route 198.51.100.0/24 via 192.0.2.10; outside default route via the node.
   *   IPv6 too: node out0 2001:db8:ff::1/64 <──> eth0 2001:db8:ff::10/64 (OUTSIDE6), default via the node.
   * Returns its name.
   */
  async outsideNamespace(extra: readonly string[]): Promise<string> {
    const out = `${this.prefix}-out`;
    await this.ip(["netns", "add", out]);
    await this.ip([
      "-n",
      this.node,
      "link",
      "add",
      "out0",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      out,
    ]);
    await this.ip(["-n", this.node, "addr", "add", "192.0.2.1/24", "dev", "out0"]);
    await this.ip(["-n", this.node, "link", "set", "out0", "up"]);
    await this.ip(["-n", this.node, "route", "add", "198.51.100.0/24", "via", "192.0.2.10"]);
    await this.ip(["-n", out, "link", "set", "lo", "up"]);
    await this.ip(["-n", out, "link", "set", "eth0", "up"]);
    await this.ip(["-n", out, "addr", "add", "192.0.2.10/24", "dev", "eth0"]);
    for (const a of extra) await this.ip(["-n", out, "addr", "add", a, "dev", "eth0"]);
    await this.ip(["-n", out, "route", "add", "default", "via", "192.0.2.1"]);
    // IPv6 too (documentation prefix; no duplicate address detection: usable at once).
    await this.ip(["-n", this.node, "addr", "add", `${OUTSIDE6.node}/64`, "dev", "out0", "nodad"]);
    await this.ip(["-n", out, "addr", "add", `${OUTSIDE6.outside}/64`, "dev", "eth0", "nodad"]);
    await this.ip(["-n", out, "-6", "route", "add", "default", "via", OUTSIDE6.node]);
    return out;
  }

  /** Stops probes and the agent, removes every namespace of the prefix and the temp dir. Never throws. */
  async destroy(): Promise<void> {
    for (const e of this.endpoints.values()) e.probe.stop();
    for (const p of this.extraProbes) p.stop();
    await this.stopAgent().catch(() => undefined);
    await cleanupPrefix(`${this.prefix}-`).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** `membrane agent` as a separate process (it can be SIGKILLed), with its JSON log lines. */
export class AgentProcess {
  readonly logs: LogLine[] = [];
  private buf = "";
  private exited = false;

  private constructor(readonly proc: ChildProcess) {
    proc.stderr?.on("data", (d: Buffer) => {
      this.buf += d.toString("utf8");
      let i: number;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.logs.push({ msg: line });
        }
      }
    });
    proc.on("exit", () => {
      this.exited = true;
    });
  }

  /**
   * Starts `node bin/membrane.js agent` with the lab's options; resolves once it started and its API listens.
   * The bound is a safety net, not a time check: with other test files loading both cores, a node
   * process alone took more than 30 s to print its first line.
   */
  static async start(o: AgentOptions, timeoutMs = 120_000): Promise<AgentProcess> {
    const bin = fileURLToPath(new URL("../../../../bin/membrane.js", import.meta.url));
    const mode = o.engine.policyEnforcementMode ?? "default";
    const args = [
      bin,
      "agent",
      "--state-dir",
      o.stateDir,
      "--socket",
      o.socketPath,
      "--node-netns",
      o.nodeNetns as string,
      "--netns-prefix",
      o.netnsPrefix,
      "--pod-cidr",
      o.podCidr4,
      "--table",
      o.table,
      "--policy-enforcement-mode",
      mode,
      "--resync",
      "0",
      "--log-level",
      "info",
    ];
    const ap = new AgentProcess(spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] }));
    const t0 = Date.now();
    while (!ap.started() || !ap.logs.some((l) => l["msg"] === "API listening")) {
      if (ap.exited) throw new Error(`the agent exited before starting: ${JSON.stringify(ap.logs)}`);
      if (Date.now() - t0 > timeoutMs) {
        ap.kill("SIGKILL");
        throw new Error(`the agent did not start within ${timeoutMs} ms: ${JSON.stringify(ap.logs)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return ap;
  }

  /** The "agent started" log line, once logged. */
  started(): LogLine | undefined {
    return this.logs.find((l) => l["msg"] === "agent started");
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.exited) this.proc.kill(signal);
  }

  /** Resolves when the process has exited (bounded). */
  async waitExit(timeoutMs = 10_000): Promise<void> {
    const t0 = Date.now();
    while (!this.exited && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20));
    if (!this.exited) throw new Error(`agent pid ${this.pid} did not exit within ${timeoutMs} ms`);
  }
}

/** Milliseconds since t0, rounded. */
export function since(t0: number): number {
  return Math.round(performance.now() - t0);
}
