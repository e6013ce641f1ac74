/**
 * Pods from the watch. The CNI plugin makes the endpoints of this node's
 * pods; the watcher gives them the pod's labels (identity from the pod
 * object). Every other pod with an address is a remote endpoint (ipcache):
 *
 *   pod of an endpoint this agent has (namespace, podEndpointName) --> labelEndpoint(labels, replace)
 *   pod on another node, with IPs, not hostNetwork, not ended --> remoteEndpoints.upsert
 *   pod on this node without an endpoint yet (CNI not done)  --> nothing; labels kept for podLabels()
 *   addresses in this node's pod CIDRs are never remote (IPAM's, for local endpoints)
 *   pod deleted / ended / its addresses changed / now on this node --> remoteEndpoints.delete of what it had
 *
 * The remote endpoints given are recorded (owned.ts: address -> pod): after a
 * restart, the first list removes those of pods deleted while the agent was
 * down. Left, such an address keeps its old identity, and a new pod that gets
 * the address would be let in (or out) as the old one.
 */
import type { Logger } from "pino";
import { containsAddr, parsePrefix, type Prefix } from "../labels/cidr.js";
import { workloadLabels } from "../labels/k8s.js";
import type { RemoteEndpointSpec } from "../policy/query.js";
import type { KObject } from "./api.js";
import { Owned } from "./owned.js";
import type { K8sSink } from "./sink.js";
import type { Store } from "../store/store.js";
import { podEndpointName } from "../labels/pod-name.js";
import { idText, objectId, podInfo, type PodInfo } from "./translate.js";

export interface PodsSyncParams {
  readonly sink: K8sSink;
  readonly logger: Logger;
  /** This node's name in Kubernetes (spec.nodeName of its pods). */
  readonly nodeName: string;
  readonly podCidrs: readonly string[];
  /** Where the remote endpoints given are recorded (absent: in memory only). */
  readonly store?: Store;
}

export class PodsSync {
  /** Pods by "<ns>/<name>". */
  private readonly pods = new Map<string, PodInfo>();
  /** Remote endpoint addresses given (by this run or, restored, by an earlier one) -> the pod key. */
  private readonly remote: Owned;
  private readonly cidrs: Prefix[];

  constructor(private readonly p: PodsSyncParams) {
    this.cidrs = p.podCidrs.map((c) => parsePrefix(c)).filter((c): c is Prefix => c !== undefined);
    this.remote = new Owned(p.store, p.nodeName, "remote-endpoints");
  }

  /** The labels of a pod the watcher knows (for the CNI plugin's identity), without the ignored ones. */
  podLabels(namespace: string, name: string): Record<string, string> | undefined {
    const p = this.pods.get(`${namespace}/${name}`);
    return p ? { ...p.labels } : undefined;
  }

  private read(o: KObject): PodInfo | undefined {
    try {
      const info = podInfo(o);
      workloadLabels({ namespace: info.namespace, labels: info.labels });
      return info;
    } catch (e) {
      let key = "(unnamed)";
      try {
        key = idText(objectId("Pod", o));
      } catch {
        /* named as unnamed */
      }
      const [namespace, name] = key.split("/");
      this.p.logger.error(
        { kind: "Pod", namespace, name, err: String(e) },
        "kubernetes object refused: not applied",
      );
      return undefined;
    }
  }

  /** The remote endpoints a pod stands for (none for this node's pods). */
  private remoteSpecs(info: PodInfo): RemoteEndpointSpec[] {
    if (info.hostNetwork || info.terminated || info.nodeName === this.p.nodeName) return [];
    return info.ips
      .filter((ip) => !this.cidrs.some((c) => containsAddr(c, ip)))
      .map((ip) => ({
        ip,
        namespace: info.namespace,
        labels: info.labels,
        ...(info.serviceAccount ? { serviceAccount: info.serviceAccount } : {}),
      }));
  }

  async upsert(o: KObject): Promise<void> {
    const info = this.read(o);
    if (!info) return;
    const key = `${info.namespace}/${info.name}`;
    this.pods.set(key, info);
    await this.labelLocal(info);
    const specs = this.remoteSpecs(info);
    const keep = new Set(specs.map((s) => s.ip));
    await this.remote.load();
    await this.dropRemote(
      this.remote
        .entries()
        .filter(([ip, k]) => k === key && !keep.has(ip))
        .map(([ip]) => ip),
    );
    await this.addRemote(key, specs);
  }

  async delete(o: KObject): Promise<void> {
    let key: string;
    try {
      key = idText(objectId("Pod", o));
    } catch {
      return;
    }
    this.pods.delete(key);
    await this.remote.load();
    await this.dropRemote(
      this.remote
        .entries()
        .filter(([, k]) => k === key)
        .map(([ip]) => ip),
    );
  }

  /** A full list: one delete of what vanished (also while the agent was down), one bulk upsert of the rest. */
  async replace(items: readonly KObject[]): Promise<void> {
    await this.remote.load();
    this.pods.clear();
    const byIp = new Map<string, { key: string; spec: RemoteEndpointSpec }>();
    for (const o of items) {
      const info = this.read(o);
      if (!info) continue;
      const key = `${info.namespace}/${info.name}`;
      this.pods.set(key, info);
      for (const s of this.remoteSpecs(info)) byIp.set(s.ip, { key, spec: s });
    }
    await this.dropRemote(
      this.remote
        .entries()
        .map(([ip]) => ip)
        .filter((ip) => !byIp.has(ip)),
    );
    if (byIp.size > 0) {
      const entries = [...byIp].map(([ip, v]): [string, string] => [ip, v.key]);
      try {
        await this.remote.set(entries);
        await this.p.sink.remoteEndpoints.upsert([...byIp.values()].map((v) => v.spec));
      } catch (e) {
        // One refused entry refuses the whole request: the others must not stay out, so one pod at a time.
        this.p.logger.warn(
          { kind: "Pod", pods: byIp.size, err: String(e) },
          "kubernetes pods: remote endpoints refused in bulk; giving them one pod at a time",
        );
        const byPod = new Map<string, RemoteEndpointSpec[]>();
        for (const v of byIp.values()) (byPod.get(v.key) ?? byPod.set(v.key, []).get(v.key))?.push(v.spec);
        for (const [key, specs] of byPod) await this.addRemote(key, specs);
      }
    }
    for (const info of this.pods.values()) await this.labelLocal(info);
  }

  /** Gives a local endpoint (made by the CNI plugin) its pod's labels. */
  private async labelLocal(info: PodInfo): Promise<void> {
    let current: Record<string, string>;
    const name = podEndpointName(info.name);
    try {
      current = this.p.sink.getEndpoint(info.namespace, name).labels;
    } catch {
      return; // not an endpoint of this agent (yet)
    }
    if (sameLabels(current, info.labels)) return;
    try {
      await this.p.sink.labelEndpoint(info.namespace, name, info.labels, true);
    } catch (e) {
      this.p.logger.error(
        { kind: "Pod", namespace: info.namespace, name: info.name, err: String(e) },
        "kubernetes pod labels refused for its endpoint",
      );
    }
  }

  private async addRemote(key: string, specs: readonly RemoteEndpointSpec[]): Promise<void> {
    if (specs.length === 0) return;
    const [namespace, name] = key.split("/");
    try {
      await this.remote.set(specs.map((s): [string, string] => [s.ip, key]));
      await this.p.sink.remoteEndpoints.upsert(specs);
    } catch (e) {
      this.p.logger.error(
        { kind: "Pod", namespace, name, err: String(e) },
        "kubernetes pod refused as a remote endpoint",
      );
    }
  }

  private async dropRemote(ips: readonly string[]): Promise<void> {
    if (ips.length === 0) return;
    try {
      await this.p.sink.remoteEndpoints.delete(ips);
      await this.remote.delete(ips);
    } catch (e) {
      this.p.logger.error(
        { kind: "Pod", ips: ips.length, err: String(e) },
        "kubernetes pods: remote endpoint delete failed",
      );
    }
  }
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
