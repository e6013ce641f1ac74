/**
 * A lab cluster on one machine: real `membrane agent --cluster-store` PROCESSES, one per node.
 *
 *   etcd (loopback, random port, temp data dir)
 *     ^  etcd://127.0.0.1:PORT          (agents run in the root namespace, like an agent on a host)
 *   agent n1 --node-netns <p>-n1 ...   agent n2 --node-netns <p>-n2 ...   (each: own process group,
 *     |                                  |                                  state dir and socket)
 *   <p>-n1 --ul0 172.31.0.2--+  bridge br0 in <p>-ul  +--ul0 172.31.0.3-- <p>-n2
 *     `- pods <p>-n1-ep<id>                                        `- pods <p>-n2-ep<id>
 *
 * etcd listens on 127.0.0.1 of the root namespace: the agent processes live there too (they
 * reach their node through --node-netns), so every agent reaches etcd with no address, route or
 * veth added to the machine's own network; loopback is not reachable from other hosts. The node
 * namespaces carry only the underlay and pod traffic. Every namespace name starts with `prefix`;
 * stop() kills every agent and etcd by process group and removes the namespaces and temp dirs
 * (safe twice, and from a SIGINT handler: a second call returns the first call's promise).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../agent/client.js";
import { MembraneError } from "../errors.js";
import { cleanupPrefix } from "../datapath/netns.js";
import { startEtcd, type EtcdHandle } from "./etcd.js";
import { setupLabEtcdAuth, type LabEtcdAuth } from "./etcd-auth.js";
import { Underlay } from "./underlay.js";
import { stopWireguardIn } from "../encryption/device.js";
import { charonRunDir, removeRunDir, stopCharonIn } from "../encryption/ipsec/charon.js";

/** bin/membrane.js of this installation (dist/src/lab/cluster.js -> bin/membrane.js). */
export const MEMBRANE_BIN = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));

export interface LabClusterOptions {
  /** Starts every namespace name (unique per run: e.g. the test's uniquePrefix); 3..10 characters. */
  readonly prefix: string;
  /** Number of nodes (1..9), named n1..nN. */
  readonly nodes: number;
  readonly tunnel?: "native" | "vxlan";
  /** --cluster-lease-ttl of every agent (seconds, default 15). */
  readonly leaseTtl?: number;
  /** Progress lines ("etcd ready on ...", "node n1 ready"). */
  readonly log?: (line: string) => void;
  /** Cluster CIDR the nodes take their /24 from (default 10.200.0.0/16). */
  readonly clusterCidr?: string;
  /** Run each agent's L7 proxy (default off: --no-proxy). */
  readonly proxy?: boolean;
  /** --log-level of the agents (default warn); their standard error is kept (the last 64 KiB). */
  readonly logLevel?: "debug" | "info" | "warn" | "error";
  /** Safety net for the start (default 120 s). */
  readonly startTimeoutMs?: number;
  /**
   * etcd serves TLS and requires a client certificate (made by openssl in etcd's private temp
   * dir); every agent gets one (--etcd-ca/--etcd-cert/--etcd-key): other local users cannot
   * reach the lab's store on loopback. Default off (faster: no certificates).
   */
  readonly tls?: boolean;
  /**
   * etcd under least privilege (lab/etcd-auth.ts): the roles of `membrane cluster etcd-setup`, auth
   * on, each agent with its own node's credentials; `auth` holds the admin's. Not with `tls`.
   */
  readonly etcdAuth?: boolean;
  /** `--encryption wireguard|ipsec|mtls-tunnel` on every agent (strict: also `--encryption-strict`). */
  readonly encryption?: "wireguard" | "ipsec" | "mtls-tunnel";
  readonly encryptionStrict?: boolean;
  /** `--spiffe` on every agent (trust domain `lab.membrane`): SVIDs and mutual authentication across nodes. */
  readonly spiffe?: boolean;
  /** Aborts the start (Ctrl-C): what was made is removed, then the start rejects. */
  readonly signal?: AbortSignal;
  /** More `membrane agent` flags for every node (e.g. ["--service-cidr", "10.97.0.0/16"], `--encryption-node-to-node`). */
  readonly agentArgs?: readonly string[];
}

export interface LabNode {
  /** --node-name: n1, n2, ... */
  readonly name: string;
  /** The node's network namespace (the agent's --node-netns). */
  readonly netns: string;
  /** The node's underlay address (--node-ip). */
  readonly ip: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly client: AgentClient;
  /** The agent's process id (= its process group); a restart gives a new one. */
  readonly pid: number;
  /** The agent's standard error so far (bounded). */
  logs(): string;
}

export interface LabCluster {
  readonly prefix: string;
  /** etcd's client URL (http://127.0.0.1:PORT) and the agents' --cluster-store (etcd://...). */
  readonly etcdEndpoint: string;
  readonly clusterStore: string;
  readonly etcd: EtcdHandle;
  /** With etcdAuth: the users' credentials (the admin's for `membrane apply --cluster-store`). */
  readonly auth?: LabEtcdAuth;
  readonly nodes: readonly LabNode[];
  readonly dir: string;
  /**
   * Kills node `name`'s agent with SIGKILL (its process group: a crash, nothing cleaned up) and starts it
   * again with the same flags; resolves with the node (new pid) once its API answers.
   */
  restart(name: string): Promise<LabNode>;
  /** Kills every agent and etcd by process group; removes the namespaces and temp dirs. */
  stop(): Promise<void>;
  /** Kills one node's agent at once (SIGKILL to its group, as a crash); its keys live until their lease ends. */
  killNode(name: string): Promise<void>;
  /** Starts a killed node's agent again with the same flags; resolves once its API answers (`nodes` updated). */
  restartNode(name: string): Promise<LabNode>;
}

interface Running {
  proc: ChildProcess;
  node: LabNode;
  readonly args: readonly string[];
}

const MAX_LOG = 64 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function exited(p: ChildProcess): boolean {
  return p.exitCode !== null || p.signalCode !== null;
}

/** SIGTERM to the agent (it stops cleanly), then SIGKILL to its whole group (helpers it left). */
async function stopAgent(p: ChildProcess): Promise<void> {
  const pid = p.pid;
  if (pid === undefined) return;
  if (!exited(p)) {
    const gone = new Promise<void>((r) => p.once("exit", () => r()));
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* already gone */
    }
    await Promise.race([gone, sleep(15_000)]); // safety net: a stuck agent is killed below
  }
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    /* the group is empty */
  }
  if (!exited(p)) await new Promise<void>((r) => p.once("exit", () => r()));
}

function spawnAgent(args: readonly string[]): { proc: ChildProcess; logs: () => string } {
  // detached: its own process group (stop() kills the group; a Ctrl-C on our terminal does not reach it).
  const proc = spawn(process.execPath, [MEMBRANE_BIN, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let text = "";
  proc.stderr?.on("data", (d: Buffer) => {
    text += d.toString("utf8");
    if (text.length > MAX_LOG) text = text.slice(-MAX_LOG);
  });
  return { proc, logs: () => text };
}

/** Starts etcd, the underlay and N nodes with their agents; resolves once every node sees every other. */
export async function startLabCluster(o: LabClusterOptions): Promise<LabCluster> {
  if (!/^[a-z0-9][a-z0-9-]{2,9}$/.test(o.prefix)) {
    throw new MembraneError(
      "CONFIG_INVALID",
      `Cannot start a lab cluster: prefix "${o.prefix}" must be 3-10 of a-z, 0-9, -`,
    );
  }
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 9) {
    throw new MembraneError("CONFIG_INVALID", `Cannot start a lab cluster: nodes ${o.nodes} is not 1..9`);
  }
  if (o.etcdAuth && o.tls) {
    // With client certificates etcd may take the certificate's name as the user: one cert per user would be needed.
    throw new MembraneError("CONFIG_INVALID", "Cannot start a lab cluster: etcdAuth does not go with tls (give one)"); // prettier-ignore
  }
  const log = o.log ?? ((): void => undefined);
  const check = (): void => {
    if (o.signal?.aborted)
      throw new MembraneError("CLUSTER_UNAVAILABLE", "Cannot start the lab cluster: interrupted");
  };
  const deadline = Date.now() + (o.startTimeoutMs ?? 120_000);
  const dir = mkdtempSync(join(tmpdir(), "membrane-lab-"));
  const running: Running[] = [];
  let etcd: EtcdHandle | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.all(running.map((r) => stopAgent(r.proc).catch(() => undefined)));
      await etcd?.stop().catch(() => undefined);
      stopWireguardIn(`${o.prefix}-`); // the tunnels outlive their agents (encryption/device.ts)
      stopCharonIn(`${o.prefix}-`); // so does charon (encryption/ipsec/charon.ts)
      for (const r of running) removeRunDir(charonRunDir(r.node.netns, r.node.name, r.node.stateDir));
      await cleanupPrefix(o.prefix).catch(() => undefined); // the underlay, nodes and pods
      rmSync(dir, { recursive: true, force: true });
    })());
  try {
    check();
    etcd = await startEtcd(o.tls ? { tls: true, clientCertAuth: true } : {});
    check();
    const clusterStore = etcd.endpoint.replace(/^https?:/, "etcd:");
    const tls = etcd.tls;
    const tlsArgs = tls
      ? ["--etcd-ca", tls.caFile, "--etcd-cert", tls.certFile, "--etcd-key", tls.keyFile]
      : [];
    log(`etcd ready on ${etcd.endpoint}${tls ? " (TLS, client certificates required)" : ""}`);
    const names = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
    const auth = o.etcdAuth ? await setupLabEtcdAuth(etcd.endpoint, names, join(dir, "etcd-users")) : undefined; // prettier-ignore
    if (auth) log(`etcd: authentication on, one user per node and ${auth.admin.username}`);
    const underlay = await Underlay.create(o.prefix);
    for (let i = 1; i <= o.nodes; i++) {
      check();
      const name = `n${i}`;
      const netns = `${o.prefix}-n${i}`;
      const n = await underlay.node(i, { netns });
      const nodeDir = join(dir, name);
      const stateDir = join(nodeDir, "state");
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      const socket = join(nodeDir, "agent.sock");
      const args = [
        "agent",
        ...["--state-dir", stateDir, "--socket", socket],
        ...["--node-netns", netns, "--netns-prefix", `${netns}-`, "--table", "membrane"],
        ...["--cluster-store", clusterStore, ...tlsArgs, "--node-name", name, "--node-ip", n.ip],
        ...(auth?.agentArgs(name) ?? []),
        ...["--cluster-cidr", o.clusterCidr ?? "10.200.0.0/16", "--tunnel", o.tunnel ?? "native"],
        ...["--cluster-lease-ttl", String(o.leaseTtl ?? 15), "--resync", "0"],
        ...["--log-level", o.logLevel ?? "warn"],
        ...(o.proxy ? [] : ["--no-proxy"]),
        ...(o.encryption === "wireguard"
          ? ["--encryption", o.encryption, "--wireguard-port", String(51870 + i)]
          : []),
        ...(o.encryption === "ipsec"
          ? ["--encryption", o.encryption, "--ipsec-port", String(51880 + 2 * i)]
          : []),
        ...(o.encryption === "mtls-tunnel" ? ["--encryption", o.encryption] : []),
        ...(o.encryptionStrict ? ["--encryption-strict"] : []),
        ...(o.spiffe ? ["--spiffe", "--trust-domain", "lab.membrane"] : []),
        ...(o.agentArgs ?? []),
      ];
      const { proc, logs } = spawnAgent(args);
      if (proc.pid === undefined)
        throw new MembraneError("CLUSTER_UNAVAILABLE", `Cannot start the agent of ${name}: no process`);
      const client = new AgentClient({ socketPath: socket, timeoutMs: 30_000 });
      running.push({
        proc,
        args,
        node: { name, netns, ip: n.ip, socket, stateDir, client, pid: proc.pid, logs },
      });
      log(`node ${name}: namespace ${netns}, underlay ${n.ip}, agent pid ${proc.pid}`);
    }
    const nodes = running.map((r) => r.node);
    for (const r of running) {
      await until(
        deadline,
        r,
        `${r.node.name}'s API`,
        async () => {
          await r.node.client.request("GET", "/v1/status");
          return true;
        },
        o.signal,
      );
    }
    for (const r of running) {
      await until(
        deadline,
        r,
        `${r.node.name} to see ${o.nodes} live nodes`,
        async () => {
          const seen = (await r.node.client.request("GET", "/v1/nodes")) as {
            name: string;
            alive: boolean;
          }[];
          return nodes.every((n) => seen.some((s) => s.name === n.name && s.alive));
        },
        o.signal,
      );
      log(`node ${r.node.name} ready: sees ${nodes.map((n) => n.name).join(", ")}`);
    }
    const find = (name: string): Running => {
      const r = running.find((x) => x.node.name === name);
      if (r === undefined) throw new MembraneError("CONFIG_INVALID", `Cannot find lab node ${name}`);
      return r;
    };
    const killNode = async (name: string): Promise<void> => {
      const r = find(name);
      try {
        process.kill(-r.node.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
      if (!exited(r.proc)) await new Promise<void>((res) => r.proc.once("exit", () => res()));
    };
    const restartNode = async (name: string): Promise<LabNode> => {
      const r = find(name);
      if (!exited(r.proc))
        throw new MembraneError("CONFIG_INVALID", `Cannot restart lab node ${name}: it runs`);
      const { proc, logs } = spawnAgent(r.args);
      if (proc.pid === undefined)
        throw new MembraneError("CLUSTER_UNAVAILABLE", `Cannot restart the agent of ${name}: no process`);
      r.proc = proc;
      r.node = { ...r.node, pid: proc.pid, logs };
      nodes[nodes.findIndex((n) => n.name === name)] = r.node;
      const apiReady = async (): Promise<boolean> => {
        await r.node.client.request("GET", "/v1/status");
        return true;
      };
      await until(
        Date.now() + (o.startTimeoutMs ?? 120_000),
        r,
        `${name}'s API after a restart`,
        apiReady,
        o.signal,
      );
      return r.node;
    };
    /** kill -9 of the node's agent (its process group), then a new agent with the same arguments. */
    const restart = async (name: string): Promise<LabNode> => {
      await killNode(name);
      return restartNode(name);
    };
    return {
      prefix: o.prefix,
      etcdEndpoint: etcd.endpoint,
      clusterStore,
      etcd,
      ...(auth ? { auth } : {}),
      nodes,
      dir,
      stop,
      killNode,
      restartNode,
      restart,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Polls `ok` (errors count as "not yet") until it is true; fails naming what and the agent's log tail. */
async function until(
  deadline: number,
  r: Running,
  what: string,
  ok: () => Promise<boolean>,
  signal: AbortSignal | undefined,
): Promise<void> {
  let last = "";
  for (;;) {
    if (signal?.aborted)
      throw new MembraneError("CLUSTER_UNAVAILABLE", "Cannot start the lab cluster: interrupted");
    if (exited(r.proc)) {
      throw new MembraneError(
        "CLUSTER_UNAVAILABLE",
        `Cannot start the lab cluster: the agent of ${r.node.name} exited (${r.proc.exitCode ?? r.proc.signalCode}) while waiting for ${what}:\n${tail(r.node.logs())}`,
      );
    }
    try {
      if (await ok()) return;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > deadline) {
      throw new MembraneError(
        "CLUSTER_UNAVAILABLE",
        `Cannot start the lab cluster: timed out waiting for ${what}${last ? ` (last: ${last})` : ""}:\n${tail(r.node.logs())}`,
      );
    }
    await sleep(100);
  }
}

function tail(s: string): string {
  return s.split("\n").slice(-20).join("\n");
}
