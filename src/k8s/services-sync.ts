/**
 * Services and EndpointSlices -> the services controller; the slices of
 * default/kubernetes -> kube-apiserver addresses (the nodes controller).
 *
 *   Service upsert/delete, or a slice of it changes --> upsertService(spec of Service + its slices)
 *   Service deleted --> a spec with no selector and no addresses (selects nothing)
 */
import type { Logger } from "pino";
import type { KObject } from "./api.js";
import type { K8sSink } from "./sink.js";
import { emptyService, idText, objectId, serviceSpec, sliceInfo, type SliceInfo } from "./translate.js";

export class ServicesSync {
  private readonly services = new Map<string, KObject>();
  private readonly slices = new Map<string, SliceInfo>();
  private readonly apiservers = new Set<string>();
  /** What was last given to the agent per service, to skip unchanged ones. */
  private readonly sent = new Map<string, string>();

  constructor(
    private readonly sink: K8sSink,
    private readonly logger: Logger,
  ) {}

  private slicesOf(key: string): SliceInfo[] {
    return [...this.slices.values()].filter((s) => `${s.namespace}/${s.service}` === key);
  }

  private async push(key: string): Promise<void> {
    await this.pushService(key);
    if (key === "default/kubernetes") await this.pushApiservers();
  }

  private async pushService(key: string): Promise<void> {
    const [namespace = "", name = ""] = key.split("/");
    const o = this.services.get(key);
    try {
      const spec = o
        ? serviceSpec(o, this.slicesOf(key))
        : this.sent.has(key)
          ? emptyService({ namespace, name })
          : undefined;
      if (!spec) return;
      const text = JSON.stringify(spec);
      if (this.sent.get(key) === text) return;
      await this.sink.upsertService(spec);
      if (o) this.sent.set(key, text);
      else this.sent.delete(key);
    } catch (e) {
      this.logger.error(
        { kind: "Service", namespace, name, err: String(e) },
        "kubernetes object refused: not applied",
      );
    }
  }

  private async pushApiservers(): Promise<void> {
    for (const ip of this.slicesOf("default/kubernetes").flatMap((s) => s.ips)) {
      if (this.apiservers.has(ip)) continue;
      try {
        await this.sink.setNodeAddress(ip, "kube-apiserver");
        this.apiservers.add(ip);
      } catch (e) {
        this.logger.error({ kind: "EndpointSlice", ip, err: String(e) }, "kube-apiserver address refused");
      }
    }
  }

  private key(kind: string, o: KObject): string | undefined {
    try {
      return idText(objectId(kind, o));
    } catch (e) {
      this.logger.error({ kind, err: String(e) }, "kubernetes object refused: not applied");
      return undefined;
    }
  }

  async upsertService(o: KObject): Promise<void> {
    const key = this.key("Service", o);
    if (key === undefined) return;
    this.services.set(key, o);
    await this.push(key);
  }

  async deleteService(o: KObject): Promise<void> {
    const key = this.key("Service", o);
    if (key === undefined) return;
    this.services.delete(key);
    await this.push(key);
  }

  async replaceServices(items: readonly KObject[]): Promise<void> {
    const before = new Set(this.services.keys());
    this.services.clear();
    for (const o of items) {
      const key = this.key("Service", o);
      if (key !== undefined) this.services.set(key, o);
    }
    for (const key of new Set([...before, ...this.services.keys()])) await this.push(key);
  }

  private readSlice(o: KObject): SliceInfo | undefined {
    try {
      return sliceInfo(o);
    } catch (e) {
      this.logger.error({ kind: "EndpointSlice", err: String(e) }, "kubernetes object refused: not applied");
      return undefined;
    }
  }

  async upsertSlice(o: KObject): Promise<void> {
    const s = this.readSlice(o);
    if (!s) return;
    const old = this.slices.get(idText(s));
    this.slices.set(idText(s), s);
    for (const svc of new Set([old?.service, s.service])) if (svc) await this.push(`${s.namespace}/${svc}`);
  }

  async deleteSlice(o: KObject): Promise<void> {
    const key = this.key("EndpointSlice", o);
    const old = key === undefined ? undefined : this.slices.get(key);
    if (key === undefined || !old) return;
    this.slices.delete(key);
    if (old.service) await this.push(`${old.namespace}/${old.service}`);
  }

  async replaceSlices(items: readonly KObject[]): Promise<void> {
    const touched = new Set([...this.slices.values()].map((s) => `${s.namespace}/${s.service}`));
    this.slices.clear();
    for (const o of items) {
      const s = this.readSlice(o);
      if (!s) continue;
      this.slices.set(idText(s), s);
      touched.add(`${s.namespace}/${s.service}`);
    }
    for (const key of touched) if (!key.endsWith("/")) await this.push(key);
  }
}
