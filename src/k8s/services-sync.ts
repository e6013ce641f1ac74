/**
 * Services and EndpointSlices -> the services controller; the slices of
 * default/kubernetes -> kube-apiserver addresses (node-addresses.ts).
 *
 *   Service upsert, or a slice of it changes --> upsertService(spec of Service + its slices)
 *   Service deleted (event, or gone from a list) --> deleteService
 *
 * The services given are recorded (owned.ts): after a restart, the first list
 * of Services removes those deleted while the agent was down. Nothing is
 * removed before that first list (the slices may be listed first).
 */
import type { Logger } from "pino";
import type { Store } from "../store/store.js";
import type { KObject } from "./api.js";
import { APISERVER_SOURCE, type NodeAddresses } from "./node-addresses.js";
import { Owned } from "./owned.js";
import type { K8sSink } from "./sink.js";
import { idText, objectId, serviceSpec, sliceInfo, type SliceInfo } from "./translate.js";

export class ServicesSync {
  private readonly services = new Map<string, KObject>();
  private readonly slices = new Map<string, SliceInfo>();
  /** What was last given to the agent per service, to skip unchanged ones. */
  private readonly sent = new Map<string, string>();
  private readonly owned: Owned;
  /** Whether a list of Services came: only then does a service's absence mean it was deleted. */
  private listed = false;
  private slicesListed = false;

  constructor(
    private readonly sink: K8sSink,
    private readonly logger: Logger,
    private readonly addresses: NodeAddresses,
    store: Store | undefined,
    nodeName: string,
  ) {
    this.owned = new Owned(store, nodeName, "services");
  }

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
      const spec = o ? serviceSpec(o, this.slicesOf(key)) : undefined;
      if (!spec) {
        // Deleted, gone from the list, or no longer one we give (ExternalName): forgotten.
        if (!this.listed || (!this.sent.has(key) && !this.owned.has(key))) return;
        await this.sink.deleteService(namespace, name);
        this.sent.delete(key);
        await this.owned.delete([key]);
        return;
      }
      const text = JSON.stringify(spec);
      if (this.sent.get(key) === text) return;
      await this.owned.set([[key, ""]]);
      await this.sink.upsertService(spec);
      this.sent.set(key, text);
    } catch (e) {
      this.logger.error(
        { kind: "Service", namespace, name, err: String(e) },
        "kubernetes object refused: not applied",
      );
    }
  }

  /** The API server's addresses: those of the default/kubernetes slices (after their first list). */
  private async pushApiservers(): Promise<void> {
    if (!this.slicesListed) return;
    const ips = this.slicesOf("default/kubernetes").flatMap((s) => s.ips);
    await this.addresses.setSource(APISERVER_SOURCE, ips);
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
    await this.owned.load();
    const before = new Set([...this.services.keys(), ...this.owned.entries().map(([k]) => k)]);
    this.services.clear();
    for (const o of items) {
      const key = this.key("Service", o);
      if (key !== undefined) this.services.set(key, o);
    }
    this.listed = true;
    for (const key of new Set([...before, ...this.services.keys()])) await this.pushService(key);
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
    this.slicesListed = true;
    for (const key of touched) if (!key.endsWith("/")) await this.pushService(key);
    await this.pushApiservers();
  }
}
