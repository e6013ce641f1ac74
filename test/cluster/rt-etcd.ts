/**
 * A throwaway etcd for the routing/ipcache tests (a local copy until the shared
 * test/cluster/etcd.ts lands; the lead dedupes): loopback, random free ports,
 * temp data dir, killed by stop().
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { EtcdStore } from "../../src/store/etcd.js";

export function etcdSkipReason(): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    if (dir !== "" && existsSync(join(dir, "etcd"))) return undefined;
  }
  return "the etcd binary is not installed (apt-get install etcd-server)";
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return addr.port;
}

export interface TestEtcd {
  readonly endpoint: string;
  /** A client with its own key prefix (`membrane-<tag>/`). */
  client(prefix: string): EtcdStore;
  stop(): Promise<void>;
}

export async function startEtcd(): Promise<TestEtcd> {
  const dataDir = mkdtempSync(join(tmpdir(), "membrane-rt-etcd-"));
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const peerUrl = `http://127.0.0.1:${await freePort()}`;
  let stderr = "";
  const proc: ChildProcess = spawn(
    "etcd",
    [
      "--name=rt",
      `--data-dir=${join(dataDir, "data")}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=rt=${peerUrl}`,
      "--log-level=error",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const silent = pino({ level: "silent" });
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = new EtcdStore({ endpoints: [endpoint], logger: silent, dialTimeoutMs: 500 });
    try {
      await s.revision();
      break;
    } catch (e) {
      if (Date.now() > deadline || proc.exitCode !== null) {
        await stop();
        throw new Error(`etcd did not start: ${(e as Error).message}\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await s.close();
    }
  }
  return {
    endpoint,
    client: (prefix) => new EtcdStore({ endpoints: [endpoint], logger: silent, prefix }),
    stop,
  };
}
