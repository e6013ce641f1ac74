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
import { validateName } from "./validate.js";

/** Store keys of services: `services/<namespace>/<name>` -> ServiceSpec. */
export const SERVICES_KEY = "services/";

export class ServicesController implements Controller {
  readonly name = "services";
  readonly revisions = new Revisions();

  constructor(private readonly d: ControllerDeps) {}

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(SERVICES_KEY)).kvs;
    for (const kv of kvs) this.d.engine().upsertService(JSON.parse(kv.value) as ServiceSpec);
    if (kvs.length > 0) this.revisions.bump();
  }

  upsert(spec: ServiceSpec): Promise<void> {
    return this.d.serial(async () => {
      validateService(spec);
      await this.d.store.put(`${SERVICES_KEY}${spec.namespace}/${spec.name}`, JSON.stringify(spec));
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
