/**
 * Pods from the watch. The CNI plugin makes the endpoints of this node's
 * pods; the watcher gives them the pod's labels (identity from the pod
 * object). Every other pod with an address is a remote endpoint (ipcache):
 *
 *   pod of an endpoint this agent has (namespace, podEndpointName) --> labelEndpoint(labels, replace)
 *   pod on another node, with IPs, not hostNetwork, not ended --> remoteEndpoints.upsert
 *   pod on this node without an endpoint yet (CNI not done)  --> nothing; labels kept for podLabels()
 *   addresses in this node's pod CIDRs are never remote (IPAM's, for local endpoints)
 *   pod deleted / ended / its addresses changed --> remoteEndpoints.delete of what it had
 */
import type { Logger } from "pino";
import { containsAddr, parsePrefix, type Prefix } from "../labels/cidr.js";
import { workloadLabels } from "../labels/k8s.js";
import type { RemoteEndpointSpec } from "../policy/query.js";
import type { KObject } from "./api.js";
import type { K8sSink } from "./sink.js";
import { podEndpointName } from "../labels/pod-name.js";
import { idText, objectId, podInfo, type PodInfo } from "./translate.js";

export interface PodsSyncParams {
  readonly sink: K8sSink;
  readonly logger: Logger;
  /** This node's name in Kubernetes (spec.nodeName of its pods). */
  readonly nodeName: string;
  readonly podCidrs: readonly string[];
}

export class PodsSync {
  /** Pods by "<ns>/<name>". */
  private readonly pods = new Map<string, PodInfo>();
  /** Remote endpoint addresses this watcher registered -> the pod key. */
  private readonly remote = new Map<string, string>();
  private readonly cidrs: Prefix[];

  constructor(private readonly p: PodsSyncParams) {
    this.cidrs = p.podCidrs.map((c) => parsePrefix(c)).filter((c): c is Prefix => c !== undefined);
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
    await this.dropRemote([...this.remote].filter(([ip, k]) => k === key && !keep.has(ip)).map(([ip]) => ip));
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
    await this.dropRemote([...this.remote].filter(([, k]) => k === key).map(([ip]) => ip));
  }

  /** A full list: one bulk upsert of every remote pod, one delete of what vanished. */
  async replace(items: readonly KObject[]): Promise<void> {
    this.pods.clear();
    const byIp = new Map<string, { key: string; spec: RemoteEndpointSpec }>();
    for (const o of items) {
      const info = this.read(o);
      if (!info) continue;
      const key = `${info.namespace}/${info.name}`;
      this.pods.set(key, info);
      for (const s of this.remoteSpecs(info)) byIp.set(s.ip, { key, spec: s });
    }
    await this.dropRemote([...this.remote.keys()].filter((ip) => !byIp.has(ip)));
    if (byIp.size > 0) {
      try {
        await this.p.sink.remoteEndpoints.upsert([...byIp.values()].map((v) => v.spec));
        for (const [ip, v] of byIp) this.remote.set(ip, v.key);
      } catch (e) {
        this.p.logger.error(
          { kind: "Pod", pods: byIp.size, err: String(e) },
          "kubernetes pods: remote endpoints refused",
        );
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
      await this.p.sink.remoteEndpoints.upsert(specs);
      for (const s of specs) this.remote.set(s.ip, key);
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
      for (const ip of ips) this.remote.delete(ip);
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
