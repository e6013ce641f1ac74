/**
 * Namespace labels (`namespaces/<name>` -> labels), for selectors on
 * namespace labels. Persisted; restored on start.
 */
import { workloadLabels } from "../../labels/k8s.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import { KEYS } from "../records.js";
import { validateName } from "./validate.js";

export class NamespacesController implements Controller {
  readonly name = "namespaces";
  readonly revisions = new Revisions();

  constructor(private readonly d: ControllerDeps) {}

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(KEYS.namespaces)).kvs;
    for (const kv of kvs) {
      this.d
        .engine()
        .setNamespace(kv.key.slice(KEYS.namespaces.length), JSON.parse(kv.value) as Record<string, string>);
    }
    if (kvs.length > 0) this.revisions.bump();
  }

  setLabels(name: string, labels: Record<string, string>): Promise<void> {
    return this.d.serial(async () => {
      validateName(name, "namespace");
      for (const k of Object.keys(labels))
        workloadLabels({ namespace: name, labels: { [k]: labels[k] ?? "" } });
      await this.d.store.put(KEYS.namespaces + name, JSON.stringify(labels));
      this.d.engine().setNamespace(name, labels);
      this.revisions.bump();
      await this.d.enforce();
    });
  }
}
