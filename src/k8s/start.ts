/** `membrane agent --kubeconfig FILE`: the watcher wired to a running agent. */
import type { Logger } from "pino";
import type { Store } from "../store/store.js";
import { KubeApi, type K8sApi } from "./api.js";
import { KubeCredentials } from "./credentials.js";
import type { BackoffConfig } from "./reflector.js";
import type { K8sSink } from "./sink.js";
import { K8sWatcher } from "./watcher.js";

export interface K8sOptions {
  readonly kubeconfig: string;
  /** This node's name in Kubernetes (its pods' spec.nodeName). */
  readonly nodeName: string;
  readonly resyncMs?: number;
  readonly backoff?: BackoffConfig;
}

/** Reads the kubeconfig: a missing or bad one throws, naming the file (before the agent starts). */
export function kubeApi(o: K8sOptions): K8sApi {
  return new KubeApi(new KubeCredentials(o.kubeconfig));
}

/** Starts watching; objects reach the agent as they are listed. */
export function startK8sWatcher(
  api: K8sApi,
  o: K8sOptions,
  sink: K8sSink,
  podCidrs: readonly (string | undefined)[],
  logger: Logger,
  store: Store,
): K8sWatcher {
  const w = new K8sWatcher({
    api,
    sink,
    logger,
    nodeName: o.nodeName,
    store,
    podCidrs: podCidrs.filter((c): c is string => c !== undefined),
    ...(o.resyncMs !== undefined ? { resyncMs: o.resyncMs } : {}),
    ...(o.backoff ? { backoff: o.backoff } : {}),
  });
  w.start();
  return w;
}
