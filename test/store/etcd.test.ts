// The Store contract against a real etcd (Debian package etcd-server), started
// on loopback with random free ports and a temp data dir, killed afterwards.
import { after, before, describe } from "node:test";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { freePort } from "../../src/lab/etcd.js";
import { EtcdStore } from "../../src/store/etcd.js";
import { storeContract } from "./contract.js";

function etcdBinary(): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(":")) {
    const p = join(dir, "etcd");
    if (dir !== "" && existsSync(p)) return p;
  }
  return undefined;
}

const bin = etcdBinary();
const silent = pino({ level: "silent" });

describe(
  "etcd backend",
  { skip: bin ? false : "the etcd binary is not installed (apt-get install etcd-server)" },
  () => {
    let proc: ChildProcess | undefined;
    let dataDir = "";
    let endpoint = "";
    let stderr = "";
    let n = 0;

    before(async () => {
      dataDir = mkdtempSync(join(tmpdir(), "membrane-etcd-"));
      const taken = new Set<number>(); // two different ports
      const client = await freePort(taken);
      const peer = await freePort(taken);
      endpoint = `http://127.0.0.1:${client}`;
      const peerUrl = `http://127.0.0.1:${peer}`;
      proc = spawn(
        bin ?? "etcd",
        [
          "--name=membrane-test",
          `--data-dir=${join(dataDir, "data")}`,
          `--listen-client-urls=${endpoint}`,
          `--advertise-client-urls=${endpoint}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=membrane-test=${peerUrl}`,
          "--log-level=error",
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
      // Ready when a read succeeds.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const s = new EtcdStore({ endpoints: [endpoint], logger: silent, dialTimeoutMs: 500 });
        try {
          await s.revision();
          return;
        } catch (e) {
          if (Date.now() > deadline || proc.exitCode !== null) {
            throw new Error(`etcd did not start: ${(e as Error).message}\n${stderr}`);
          }
          await new Promise((r) => setTimeout(r, 200));
        } finally {
          await s.close();
        }
      }
    });

    after(async () => {
      try {
        if (proc && proc.exitCode === null) {
          const exited = new Promise((r) => proc?.once("exit", r));
          proc.kill("SIGKILL");
          await exited;
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    // Each case gets its own namespace in the one etcd.
    storeContract(
      "etcd",
      async () =>
        new EtcdStore({ endpoints: [endpoint], logger: silent, prefix: `test-${process.pid}-${n++}/` }),
    );
  },
);
