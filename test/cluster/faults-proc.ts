// A node of the fault tests as a real `membrane agent --cluster-store ...` process (it can be killed
// with -9), in an AgentLab's node namespace (its prefix, state dir, socket and nft table), with an
// API client; and read-backs of what a node's kernel holds (its nft table, its routes).
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { EndpointView } from "../../src/agent/agent.js";
import { AgentClient } from "../../src/agent/client.js";
import { runRaw } from "../../src/datapath/exec.js";
import type { AgentLab, LabEndpoint, LogLine } from "../agent/e2e/harness.js";

const BIN = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));

export class AgentProc {
  readonly logs: LogLine[] = [];
  private buf = "";
  private exited = false;
  readonly api: AgentClient;

  private constructor(
    readonly lab: AgentLab,
    readonly proc: ChildProcess,
  ) {
    this.api = new AgentClient({ socketPath: lab.options.socketPath, timeoutMs: 30_000 });
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
    proc.on("exit", () => (this.exited = true));
  }

  /** `membrane agent` for `lab` with `cluster` flags; resolves once its API listens (60 s safety net). */
  static async start(lab: AgentLab, cluster: readonly string[]): Promise<AgentProc> {
    const o = lab.options;
    const args = [
      BIN,
      "agent",
      ...["--state-dir", o.stateDir, "--socket", o.socketPath, "--node-netns", lab.node],
      ...["--netns-prefix", o.netnsPrefix, "--table", o.table, "--resync", "0"],
      ...["--no-flows", "--no-proxy", "--log-level", "info", ...cluster],
    ];
    const p = new AgentProc(lab, spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] }));
    const t0 = Date.now();
    while (!p.logs.some((l) => l["msg"] === "API listening")) {
      if (p.exited || Date.now() - t0 > 60_000) {
        p.proc.kill("SIGKILL");
        throw new Error(`the agent did not start: ${JSON.stringify(p.logs)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return p;
  }

  /** The "agent started" log line. */
  started(): LogLine | undefined {
    return this.logs.find((l) => l["msg"] === "agent started");
  }

  async endpoint(name: string, app: string, tcp: readonly number[] = []): Promise<LabEndpoint> {
    const view = (await this.api.request("POST", "/v1/endpoints", {
      name,
      namespace: "default",
      labels: { app },
    })) as EndpointView;
    return this.lab.attach(view, { tcp });
  }

  async remoteIps(): Promise<string[]> {
    return ((await this.api.request("GET", "/v1/remote-endpoints")) as { ip: string }[]).map((r) => r.ip);
  }

  async ipcache(): Promise<Map<string, number>> {
    const list = (await this.api.request("GET", "/v1/ipcache")) as { prefix: string; identity: number }[];
    return new Map(list.map((e) => [e.prefix, e.identity]));
  }

  /** Signals the process and waits for its exit (10 s safety net, then SIGKILL). */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill(signal);
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(t);
  }
}

/** The node's nft table as the kernel lists it, without counters (they move with traffic). */
export async function readTable(lab: AgentLab): Promise<string> {
  const r = await runRaw(["nft", "list", "table", "inet", lab.options.table], { netns: lab.node });
  if (r.status !== 0) throw new Error(`nft list table in ${lab.node}: ${r.stderr}`);
  return r.stdout.replace(/counter packets \d+ bytes \d+/g, "counter");
}

/** The node's routes (main table, every protocol). */
export async function readRoutes(lab: AgentLab): Promise<string> {
  const r = await runRaw(["ip", "route", "show"], { netns: lab.node });
  if (r.status !== 0) throw new Error(`ip route in ${lab.node}: ${r.stderr}`);
  return r.stdout;
}
