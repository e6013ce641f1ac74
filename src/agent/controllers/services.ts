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
      validateName(spec.name, "service name");
      validateName(spec.namespace, "namespace");
      for (const ip of spec.ips ?? []) {
        if (parseAddr(ip) === undefined) {
          throw new MembraneError(
            "ENDPOINT_INVALID",
            `Cannot add service ${spec.namespace}/${spec.name}: "${ip}" is not an IP address`,
          );
        }
      }
      if (spec.selector) workloadLabels({ namespace: spec.namespace, labels: spec.selector });
      await this.d.store.put(`${SERVICES_KEY}${spec.namespace}/${spec.name}`, JSON.stringify(spec));
      this.d.engine().upsertService(spec);
      this.revisions.bump();
      await this.d.enforce();
    });
  }
}
