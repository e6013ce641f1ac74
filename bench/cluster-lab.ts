/**
 * The cluster benchmark's lab: one etcd (loopback), an underlay bridge in a
 * namespace of its own, and N node namespaces each running a real
 * `membrane agent --cluster-store` PROCESS (own state dir, socket, table),
 * with an API client per node. (The kernel read-back polls `nft get element`:
 * nft 1.0.6's `nft monitor` dies of SIGSEGV on this table's events after the
 * first endpoint create under a policy.)
 *
 *   startEtcd --> Underlay(<prefix>-ul) --> node i: <prefix>-n<i> (172.31.0.<i+1>)
 *                                               agent process (its own process group), pods <prefix>-<i>-*
 *   stop(): agents killed by process group, every <prefix>* namespace removed, etcd stopped
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { openSync, closeSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../src/agent/client.js";
import { cleanupPrefix } from "../src/datapath/netns.js";
import { startEtcd, type EtcdHandle } from "../src/lab/etcd.js";
import { Underlay } from "../src/lab/underlay.js";

const BIN = fileURLToPath(new URL("../../bin/membrane.js", import.meta.url));

export interface LabNode {
  readonly index: number;
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  readonly proc: ChildProcess;
  readonly client: AgentClient;
  readonly logFile: string;
}

export interface ClusterLab {
  readonly prefix: string;
  readonly etcd: EtcdHandle;
  readonly nodes: readonly LabNode[];
  readonly table: string;
  stop(): Promise<void>;
}

/** Kills a detached child's whole process group (the agent and its helpers). */
export async function killGroup(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return;
  const exited = new Promise((r) => p.once("exit", r));
  try {
    process.kill(-p.pid, "SIGKILL");
  } catch {
    p.kill("SIGKILL");
  }
  await exited;
}

async function waitServing(n: LabNode): Promise<void> {
  const deadline = Date.now() + 120_000; // a safety net, not a measurement
  for (;;) {
    try {
      await n.client.request("GET", "/v1/status");
      return;
    } catch (e) {
      if (n.proc.exitCode !== null || Date.now() > deadline) {
        const log = readFileSync(n.logFile, "utf8").slice(-2000);
        throw new Error(`agent ${n.name} did not start: ${(e as Error).message}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Starts the lab; on failure everything started so far is stopped before the error is thrown. */
export async function startClusterLab(prefix: string, n: number): Promise<ClusterLab> {
  const dir = await mkdtemp(join(tmpdir(), "membrane-cbench-"));
  const procs: ChildProcess[] = [];
  let etcd: EtcdHandle | undefined;
  let underlay: Underlay | undefined;
  const table = `${prefix}t`;
  const stop = async (): Promise<void> => {
    // SIGTERM first (the agent stops cleanly: lease released, --cpu-prof written), then the group.
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
    const exited = procs.map((p) =>
      p.exitCode !== null || p.signalCode !== null ? undefined : new Promise((r) => p.once("exit", r)),
    );
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 10_000))]);
    for (const p of procs) await killGroup(p).catch(() => undefined);
    await underlay?.destroy().catch(() => undefined);
    await cleanupPrefix(prefix).catch(() => undefined);
    await etcd?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    etcd = await startEtcd();
    underlay = await Underlay.create(prefix);
    const nodes: LabNode[] = [];
    for (let i = 0; i < n; i++) {
      const netns = `${prefix}-n${i}`;
      const tn = await underlay.node(i, { netns });
      const name = `${prefix}-n${i}`;
      const socket = join(dir, `n${i}.sock`);
      const logFile = join(dir, `n${i}.log`);
      const fd = openSync(logFile, "a");
      // CB_AGENT_CPU_PROF=DIR: each agent writes a V8 CPU profile there when it stops (profiling).
      const prof = process.env["CB_AGENT_CPU_PROF"];
      const proc = spawn(
        process.execPath,
        [
          ...(prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : []),
          BIN,
          "agent",
          ...["--state-dir", join(dir, `n${i}`), "--socket", socket, "--node-netns", netns],
          ...["--netns-prefix", `${prefix}-${i}-`, "--table", table, "--resync", "0"],
          ...["--no-flows", "--no-proxy", "--log-level", "warn"],
          ...["--cluster-store", `etcd://127.0.0.1:${new URL(etcd.endpoint).port}`],
          ...["--node-name", name, "--node-ip", tn.ip, "--cluster-cidr", "10.200.0.0/16"],
        ],
        { stdio: ["ignore", fd, fd], detached: true },
      );
      closeSync(fd);
      procs.push(proc);
      nodes.push({
        index: i,
        name,
        netns,
        ip: tn.ip,
        proc,
        client: new AgentClient({ socketPath: socket, timeoutMs: 60_000 }),
        logFile,
      });
    }
    await Promise.all(nodes.map(waitServing));
    return { prefix, etcd, nodes, table, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** An agent process's resident memory (VmRSS, VmHWM) in MiB. */
export function rssMiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
  return { rss: Math.round(kb("VmRSS") / 102.4) / 10, hwm: Math.round(kb("VmHWM") / 102.4) / 10 };
}

/** A process's CPU time (user + system) in ms, from /proc/<pid>/stat (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}
