/**
 * The Kubernetes API as a source of truth: one Reflector (list + watch) per
 * resource of resources.ts, each feeding the agent's controllers through the
 * same entry points the agent's API uses (sink.ts), so every object is
 * validated, persisted and enforced exactly as `membrane apply` and friends.
 *
 *   apiserver --list/watch--> Reflector(namespaces)  --> setNamespaceLabels
 *                             Reflector(nodes)       --> NodeAddresses: set/deleteNodeAddress(remote-node)
 *                             Reflector(pods)        --> PodsSync: endpoint labels | remote endpoints
 *                             Reflector(services, endpointslices) --> ServicesSync --> upsert/deleteService
 *                             Reflector(networkpolicies, cnp, ccnp) --> PoliciesSync --> policies
 *
 * An object that fails validation is logged with its kind, namespace and
 * name and skipped; the others go on.
 */
import type { Logger } from "pino";
import type { K8sApi, KObject } from "./api.js";
import { PodsSync } from "./pods-sync.js";
import { PoliciesSync } from "./policies-sync.js";
import { Reflector, type BackoffConfig, type ReflectorEvent, type ReflectorStats } from "./reflector.js";
import { WATCHED, type ResourceName, type WatchedResource } from "./resources.js";
import type { K8sSink } from "./sink.js";
import { labelsOf, nodeAddresses, objectId } from "./translate.js";
import { ServicesSync } from "./services-sync.js";
import { NodeAddresses } from "./node-addresses.js";
import type { Store } from "../store/store.js";
import { k8sStatus, type K8sStatus } from "./status.js";

export interface K8sWatcherParams {
  readonly api: K8sApi;
  readonly sink: K8sSink;
  readonly logger: Logger;
  /** This node's name in Kubernetes. */
  readonly nodeName: string;
  readonly podCidrs: readonly string[];
  /** Relist every resource this often (ms); 0 = never. Default 10 minutes. */
  readonly resyncMs?: number;
  readonly backoff?: BackoffConfig;
  /** The agent's store: what the watcher gave is recorded there, for the next run's first list. */
  readonly store?: Store;
}

type Handlers = Record<"upsert" | "delete", (o: KObject) => Promise<void>> & {
  replace: (items: readonly KObject[]) => Promise<void>;
};

export const DEFAULT_BACKOFF: BackoffConfig = { initialMs: 500, maxMs: 30_000 };

export class K8sWatcher {
  private readonly reflectors: Reflector[] = [];
  private readonly pods: PodsSync;
  private readonly log: Logger;
  private readonly nodes: NodeAddresses;
  /** Labels last given per namespace (a relist of unchanged namespaces changes nothing). */
  private readonly nsSent = new Map<string, string>();

  constructor(private readonly p: K8sWatcherParams) {
    this.log = p.logger.child({ component: "k8s" });
    const store = p.store ? { store: p.store } : {};
    this.pods = new PodsSync({
      sink: p.sink,
      logger: this.log,
      nodeName: p.nodeName,
      podCidrs: p.podCidrs,
      ...store,
    });
    this.nodes = new NodeAddresses(p.sink, this.log, p.store, p.nodeName);
    const services = new ServicesSync(p.sink, this.log, this.nodes, p.store, p.nodeName);
    const handlers = (r: WatchedResource): Handlers => {
      switch (r.resource) {
        case "namespaces":
          return {
            upsert: (o) => this.namespace(o, false),
            delete: (o) => this.namespace(o, true),
            replace: (items) => this.each(items, (o) => this.namespace(o, false)),
          };
        case "nodes":
          return {
            upsert: (o) => this.node(o, false),
            delete: (o) => this.node(o, true),
            replace: (items) => this.replaceNodes(items),
          };
        case "pods":
          return {
            upsert: (o) => this.pods.upsert(o),
            delete: (o) => this.pods.delete(o),
            replace: (items) => this.pods.replace(items),
          };
        case "services":
          return {
            upsert: (o) => services.upsertService(o),
            delete: (o) => services.deleteService(o),
            replace: (items) => services.replaceServices(items),
          };
        case "endpointslices":
          return {
            upsert: (o) => services.upsertSlice(o),
            delete: (o) => services.deleteSlice(o),
            replace: (items) => services.replaceSlices(items),
          };
        default: {
          const s = new PoliciesSync(r, p.sink, this.log);
          return {
            upsert: (o) => s.upsert(o),
            delete: (o) => s.delete(o),
            replace: (items) => s.replace(items),
          };
        }
      }
    };
    for (const r of WATCHED) {
      const h = handlers(r);
      this.reflectors.push(
        new Reflector({
          api: p.api,
          resource: r,
          logger: this.log,
          resyncMs: p.resyncMs ?? 600_000,
          backoff: p.backoff ?? DEFAULT_BACKOFF,
          handle: (ev: ReflectorEvent) =>
            ev.type === "replace"
              ? h.replace(ev.items)
              : ev.type === "upsert"
                ? h.upsert(ev.object)
                : h.delete(ev.object),
        }),
      );
    }
  }

  start(): void {
    for (const r of this.reflectors) r.start();
    this.log.info({ resources: WATCHED.map((r) => r.resource) }, "kubernetes watcher started");
  }

  /** Resolves once every resource was listed once and handed to the agent. */
  async synced(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.synced));
  }

  async stop(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.stop()));
  }

  /** Lists every resource again now (what a periodic resync does). */
  relist(): void {
    for (const r of this.reflectors) r.relist();
  }

  stats(): Record<ResourceName, ReflectorStats> {
    return Object.fromEntries(
      WATCHED.map((r, i) => [r.resource, { ...(this.reflectors[i]?.stats as ReflectorStats) }]),
    ) as Record<ResourceName, ReflectorStats>;
  }

  /** For the agent's status: failing resources, the last error, the credentials. */
  status(): K8sStatus {
    return k8sStatus(this.stats(), this.p.api.credentialsStatus?.());
  }

  /** A pod's labels as the watcher knows them (the CNI plugin's identity source). */
  podLabels(namespace: string, name: string): Record<string, string> | undefined {
    return this.pods.podLabels(namespace, name);
  }

  private async each(items: readonly KObject[], f: (o: KObject) => Promise<void>): Promise<void> {
    for (const o of items) await f(o);
  }

  private refused(kind: string, o: KObject, e: unknown): void {
    let name: string | undefined;
    try {
      name = objectId(kind, o).name;
    } catch {
      name = undefined;
    }
    this.log.error({ kind, name, err: String(e) }, "kubernetes object refused: not applied");
  }

  /** A namespace's labels; a deleted namespace has none. */
  private async namespace(o: KObject, deleted: boolean): Promise<void> {
    try {
      const { name } = objectId("Namespace", o);
      const labels = deleted ? {} : labelsOf("Namespace", o);
      const text = JSON.stringify(labels);
      if (this.nsSent.get(name) === text) return;
      await this.p.sink.setNamespaceLabels(name, labels);
      this.nsSent.set(name, text);
    } catch (e) {
      this.refused("Namespace", o, e);
    }
  }

  /** Another node's addresses are remote-node; this node's own are the host's. */
  private async node(o: KObject, deleted: boolean): Promise<void> {
    try {
      const n = nodeAddresses(o);
      await this.nodes.setSource(`node:${n.name}`, deleted || n.name === this.p.nodeName ? [] : n.ips);
    } catch (e) {
      this.refused("Node", o, e);
    }
  }

  /** A list of Nodes: the addresses of nodes gone (also while the agent was down) are forgotten. */
  private async replaceNodes(items: readonly KObject[]): Promise<void> {
    const wanted = new Map<string, string[]>();
    for (const o of items) {
      try {
        const n = nodeAddresses(o);
        if (n.name !== this.p.nodeName) wanted.set(`node:${n.name}`, n.ips);
      } catch (e) {
        this.refused("Node", o, e);
      }
    }
    await this.nodes.replaceSources("node:", wanted);
  }
}
