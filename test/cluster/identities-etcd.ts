// A real etcd that can be stopped and started again on the same data dir (an etcd restart), for the
// cluster-identity tests; loopback, random free ports (src/lab/etcd.ts starts the others).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { EtcdStore } from "../../src/store/etcd.js";
import { etcdBinary, freePort } from "../../src/lab/etcd.js";

export { etcdBinary };

export const silent = pino({ level: "silent" });

export class TestEtcd {
  private proc: ChildProcess | undefined;
  private stderr = "";
  readonly dataDir = mkdtempSync(join(tmpdir(), "membrane-id-etcd-"));
  endpoint = "";
  private peerUrl = "";

  async start(): Promise<void> {
    if (this.endpoint === "") {
      const taken = new Set<number>(); // two different ports
      this.endpoint = `http://127.0.0.1:${await freePort(taken)}`;
      this.peerUrl = `http://127.0.0.1:${await freePort(taken)}`;
    }
    const proc = spawn(
      etcdBinary() ?? "etcd",
      [
        "--name=id-test",
        `--data-dir=${join(this.dataDir, "data")}`,
        `--listen-client-urls=${this.endpoint}`,
        `--advertise-client-urls=${this.endpoint}`,
        `--listen-peer-urls=${this.peerUrl}`,
        `--initial-advertise-peer-urls=${this.peerUrl}`,
        `--initial-cluster=id-test=${this.peerUrl}`,
        "--log-level=error",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    this.proc = proc;
    proc.stderr?.on("data", (d: Buffer) => (this.stderr += d.toString()));
    const deadline = Date.now() + 30_000; // a safety net, not a measure
    for (;;) {
      const s = this.store("probe/");
      try {
        await s.revision();
        return;
      } catch (e) {
        if (Date.now() > deadline || proc.exitCode !== null)
          throw new Error(`etcd did not start: ${(e as Error).message}\n${this.stderr}`);
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        await s.close();
      }
    }
  }

  store(prefix: string): EtcdStore {
    return new EtcdStore({ endpoints: [this.endpoint], logger: silent, prefix, dialTimeoutMs: 1000 });
  }

  /** Stops etcd (SIGTERM, as systemd would); the data dir stays. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return; // gone already (by exit or signal)
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }

  async destroy(): Promise<void> {
    try {
      const p = this.proc;
      if (p && p.exitCode === null && p.signalCode === null) {
        const exited = new Promise((r) => p.once("exit", r));
        p.kill("SIGKILL");
        await exited;
      }
    } finally {
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }
}

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return "?";
  }
}

function procText(pid: string, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8").trim().slice(0, 600);
  } catch {
    return "?";
  }
}

function fdTargets(pid: string): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return "";
      }
    });
  } catch {
    return [];
  }
}

/**
 * What keeps this process alive: its active resources, its children, and for each pipe it holds
 * every other process holding the same pipe (a grandchild that inherited a child's stdout keeps
 * the pipe open after the child is gone).
 */
export function aliveReport(): string {
  const self = String(process.pid);
  const kids = readdirSync("/proc/self/task").flatMap((t) =>
    readFileSync(`/proc/self/task/${t}/children`, "utf8").split(" ").filter(Boolean),
  );
  const pipes = new Set(fdTargets("self").filter((t) => t.startsWith("pipe:")));
  const holders: string[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d) && d !== self)) {
    const shared = fdTargets(pid).filter((t) => pipes.has(t));
    if (shared.length > 0) holders.push(`${pid} (${shared.join(",")}): ${cmdline(pid)}`);
  }
  return JSON.stringify({
    resources: process.getActiveResourcesInfo(),
    children: kids.map(
      (k) =>
        `${k}: ${cmdline(k)} [${procText(k, "wchan")}; ${procText(k, "syscall")}; ${procText(k, "stack").replace(/\n/g, " | ")}]`,
    ),
    pipeHolders: holders,
  });
}
