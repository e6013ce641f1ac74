/**
 * Namespace labels (`namespaces/<name>` -> labels), for selectors on
 * namespace labels. Persisted; restored on start.
 */
import { workloadLabels } from "../../labels/k8s.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import { KEYS } from "../records.js";
import type { SyncedResource } from "../../cluster/synced.js";
import { validateName } from "./validate.js";

export class NamespacesController implements Controller, SyncedResource {
  readonly name = "namespaces";
  readonly prefix = KEYS.namespaces;
  readonly revisions = new Revisions();
  /** Namespace name -> its labels as stored (JSON). */
  private readonly known = new Map<string, string>();

  constructor(private readonly d: ControllerDeps) {}

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(KEYS.namespaces)).kvs;
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
    const name = key.slice(KEYS.namespaces.length);
    if (this.known.get(name) === value) return false;
    let labels: Record<string, string> = {};
    if (value !== undefined) {
      try {
        labels = JSON.parse(value) as Record<string, string>;
        if (typeof labels !== "object" || labels === null || Array.isArray(labels))
          throw new Error("not an object of labels");
        validateName(name, "namespace");
        for (const k of Object.keys(labels))
          workloadLabels({ namespace: name, labels: { [k]: labels[k] ?? "" } });
      } catch (e) {
        this.d.logger.error({ key, err: String(e) }, "stored namespace cannot be read; skipped");
        return false;
      }
      this.known.set(name, value);
    } else this.known.delete(name);
    this.d.engine().setNamespace(name, labels);
    return true;
  }

  syncedKeys(): string[] {
    return [...this.known.keys()].map((n) => KEYS.namespaces + n);
  }

  /** Every namespace's labels (for the gateway's allowedRoutes selectors). */
  labels(): Record<string, Record<string, string>> {
    return Object.fromEntries([...this.known].map(([n, v]) => [n, JSON.parse(v) as Record<string, string>]));
  }

  setLabels(name: string, labels: Record<string, string>): Promise<void> {
    return this.d.serial(async () => {
      validateName(name, "namespace");
      for (const k of Object.keys(labels))
        workloadLabels({ namespace: name, labels: { [k]: labels[k] ?? "" } });
      const value = JSON.stringify(labels);
      await this.d.store.put(KEYS.namespaces + name, value);
      this.known.set(name, value);
      this.d.engine().setNamespace(name, labels);
      this.revisions.bump();
      await this.d.enforce();
    });
  }
}
