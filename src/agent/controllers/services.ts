/**
 * Services, for toServices rules: with a pod selector a service's backends
 * are the pods it selects; without one, its `ips` (outside addresses).
 * Persisted under `services/<namespace>/<name>`; restored on start.
 */
import { MembraneError } from "../../errors.js";
import { parseAddr } from "../../labels/cidr.js";
import { workloadLabels } from "../../labels/k8s.js";
import type { ServiceSpec } from "../../policy/query.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import type { SyncedResource } from "../../cluster/synced.js";
import { validateName } from "./validate.js";

/** Store keys of services: `services/<namespace>/<name>` -> ServiceSpec. */
export const SERVICES_KEY = "services/";

export class ServicesController implements Controller, SyncedResource {
  readonly name = "services";
  readonly prefix = SERVICES_KEY;
  readonly revisions = new Revisions();
  /** Store key -> the service as stored (JSON). */
  private readonly known = new Map<string, string>();

  constructor(private readonly d: ControllerDeps) {}

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(SERVICES_KEY)).kvs;
    let changed = false;
    for (const kv of kvs) changed = this.take(kv.key, kv.value) || changed;
    if (changed) this.revisions.bump();
  }

  /** Another node's change (cluster mode, synced.ts), or a stored record at start. */
  syncRecord(key: string, value: string | undefined): boolean {
    if (!this.take(key, value)) return false;
    this.revisions.bump();
    return true;
  }

  /** The record into the view and the engine; false when nothing changed. */
  private take(key: string, value: string | undefined): boolean {
    if (this.known.get(key) === value) return false;
    if (value === undefined) {
      this.known.delete(key);
      const [namespace = "", name = ""] = key.slice(SERVICES_KEY.length).split("/");
      if (!this.d.engine().deleteService(namespace, name)) return false;
    } else {
      try {
        const spec = JSON.parse(value) as ServiceSpec;
        validateService(spec);
        if (`${SERVICES_KEY}${spec.namespace}/${spec.name}` !== key)
          throw new Error("the record names another service");
        this.d.engine().upsertService(spec);
      } catch (e) {
        this.d.logger.error({ key, err: String(e) }, "stored service cannot be read; skipped");
        return false;
      }
      this.known.set(key, value);
    }
    return true;
  }

  syncedKeys(): string[] {
    return [...this.known.keys()];
  }

  /** Every service as stored (the gateway resolves its backendRefs against them). */
  specs(): ServiceSpec[] {
    return [...this.known.values()].map((v) => JSON.parse(v) as ServiceSpec);
  }

  upsert(spec: ServiceSpec): Promise<void> {
    return this.d.serial(async () => {
      validateService(spec);
      const key = `${SERVICES_KEY}${spec.namespace}/${spec.name}`;
      const value = JSON.stringify(spec);
      await this.d.store.put(key, value);
      this.known.set(key, value);
      this.d.engine().upsertService(spec);
      this.revisions.bump();
      await this.d.enforce();
    });
  }

  /** Forgets a service (a service not known changes nothing). */
  delete(namespace: string, name: string): Promise<void> {
    return this.d.serial(async () => {
      validateName(name, "service name");
      validateName(namespace, "namespace");
      await this.d.store.delete(`${SERVICES_KEY}${namespace}/${name}`);
      this.known.delete(`${SERVICES_KEY}${namespace}/${name}`);
      if (!this.d.engine().deleteService(namespace, name)) return;
      this.revisions.bump();
      await this.d.enforce();
    });
  }
}

/** Checks everything before anything is stored or changed: a refused service changes nothing. */
export function validateService(spec: ServiceSpec): void {
  validateName(spec.name, "service name");
  validateName(spec.namespace, "namespace");
  const refuse = (path: string, why: string): MembraneError =>
    new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot add service ${spec.namespace}/${spec.name}: ${path} ${why}`,
      {
        location: { path },
      },
    );
  spec.ports.forEach((p, i) => {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535)
      throw refuse(`ports[${i}].port`, `must be a port from 1 to 65535, not ${String(p.port)}`);
  });
  (spec.ips ?? []).forEach((ip, i) => {
    if (parseAddr(ip) === undefined) throw refuse(`ips[${i}]`, `${JSON.stringify(ip)} is not an IP address`);
  });
  // Both are Kubernetes labels (the selector's keys and values are matched against pods' labels,
  // the service's own labels against k8sServiceSelector): the same rules as an endpoint's.
  if (spec.selector) workloadLabels({ namespace: spec.namespace, labels: spec.selector });
  if (spec.labels) workloadLabels({ namespace: spec.namespace, labels: spec.labels });
}
