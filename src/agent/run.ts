/**
 * `membrane agent`: opens the store, starts the Agent and serves its API
 * until SIGINT/SIGTERM. Stopping leaves the kernel enforcing.
 *
 *   AgentOptions --runAgent--> Store (embedded | etcd) + Agent + ApiServer
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { settleHeap } from "./heap-settle.js";
import { kubeApi, startK8sWatcher, type K8sOptions } from "../k8s/start.js";
import type { K8sWatcher } from "../k8s/watcher.js";
import { withK8sStatus } from "../k8s/status.js";
import { EmbeddedStore } from "../store/embedded.js";
import { EtcdStore } from "../store/etcd.js";
import type { Store } from "../store/store.js";
import type { EngineConfig } from "../policy/query.js";
import { Agent, type AgentParams } from "./agent.js";
import { ApiServer } from "./api/server.js";
import { agentRoutes } from "./routes.js";

export interface AgentOptions {
  readonly stateDir: string;
  readonly socketPath: string;
  readonly nodeNetns?: string;
  readonly netnsPrefix: string;
  readonly podCidr4: string;
  readonly podCidr6?: string;
  readonly table: string;
  readonly logGroup: number;
  readonly etcd?: readonly string[];
  readonly engine: Partial<EngineConfig>;
  readonly logLevel: string;
  readonly resyncMs: number;
  /** Flow visibility (NFLOG reader, flow ring, metrics, export); absent = off. */
  readonly observe?: AgentParams["observe"];
  /** The L7 proxy; absent = off (L7 rules are then enforced as drops). */
  readonly proxy?: AgentParams["proxy"];
  /** Watch a Kubernetes API (`--kubeconfig`) and feed its objects to the controllers; absent = off. */
  readonly k8s?: K8sOptions;
  /** Runtime events (process exec/exit); absent = off. */
  readonly runtime?: AgentParams["runtime"];
}

export interface RunningAgent {
  readonly agent: Agent;
  /** The Kubernetes watcher, when `k8s` was given. */
  readonly k8s: K8sWatcher | undefined;
  stop(): Promise<void>;
}

export async function startAgent(o: AgentOptions, logger?: Logger): Promise<RunningAgent> {
  const log = logger ?? pino({ level: o.logLevel, base: { component: "agent" } }, pino.destination(2));
  const kube = o.k8s ? kubeApi(o.k8s) : undefined; // a bad kubeconfig stops the start here
  await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
  const store: Store = o.etcd?.length
    ? new EtcdStore({ endpoints: o.etcd, logger: log })
    : await EmbeddedStore.open({ dir: join(o.stateDir, "store"), logger: log });
  const agent = new Agent({
    store,
    logger: log,
    ...(o.nodeNetns !== undefined ? { nodeNetns: o.nodeNetns } : {}),
    netnsPrefix: o.netnsPrefix,
    podCidr4: o.podCidr4,
    ...(o.podCidr6 !== undefined ? { podCidr6: o.podCidr6 } : {}),
    table: o.table,
    logGroup: o.logGroup,
    engine: o.engine,
    resyncMs: o.resyncMs,
    stateDir: o.stateDir,
    ...(o.observe ? { observe: o.observe } : {}),
    ...(o.proxy ? { proxy: o.proxy } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
  });
  try {
    await agent.start();
  } catch (e) {
    await store.close().catch(() => undefined);
    throw e;
  }
  settleHeap(); // the start's state promoted now, not in the first requests (heap-settle.ts)
  let k8s: K8sWatcher | undefined = undefined; // set once the API serves (below)
  const routes = withK8sStatus(agentRoutes(agent), () => k8s?.status());
  const api = new ApiServer({ socketPath: o.socketPath, routes, logger: log });
  try {
    await api.start();
    agent.serving();
  } catch (e) {
    await agent.stop();
    await store.close().catch(() => undefined);
    throw e;
  }
  // After the API serves: the CNI plugin can make the endpoints the pods' labels are for.
  k8s = kube && o.k8s ? startK8sWatcher(kube, o.k8s, agent, [o.podCidr4, o.podCidr6], log, store) : undefined;
  return {
    agent,
    k8s,
    async stop() {
      await k8s?.stop();
      await api.stop();
      await agent.stop();
      await store.close();
      log.info("agent stopped; the kernel keeps enforcing");
    },
  };
}

/** Runs until a signal; resolves when stopped. */
export async function runAgent(o: AgentOptions): Promise<void> {
  const running = await startAgent(o);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      void running.stop().finally(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
