/**
 * NetworkPolicies, CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies
 * from the watch -> the policies controller, validated exactly as
 * `membrane apply` validates a file (parsePolicies on the object's JSON).
 *
 *   upsert: parse --ok--> applyPolicyResources([res], "k8s:<kind>/<ns>/<name>")
 *                 --bad--> log (kind, namespace, name, every problem); what was applied before stays
 *   delete: deletePolicyRefs([ref]) for a policy this watcher applied
 *   replace (list, relist): apply every valid one in one call (one enforce),
 *                           delete the ones this watcher (or one before it, restored from the
 *                           store with source "k8s:<kind>/...") applied that are gone
 *
 * A rejected object changes nothing: the agent keeps enforcing the last
 * version it accepted, as a rejected `membrane apply` does.
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { parsePolicies } from "../policy/api/index.js";
import type { PolicyRef, PolicyResource } from "../policy/types.js";
import type { KObject } from "./api.js";
import type { WatchedResource } from "./resources.js";
import type { K8sSink } from "./sink.js";
import { idText, objectId, policyDocument } from "./translate.js";

export class PoliciesSync {
  /** Policies this watcher applied: "<ns>/<name>" -> ref. */
  private readonly applied = new Map<string, PolicyRef>();

  constructor(
    private readonly r: WatchedResource,
    private readonly sink: K8sSink,
    private readonly logger: Logger,
  ) {}

  private file(key: string): string {
    return `k8s:${this.r.kind}/${key}`;
  }

  /** Parses one object; undefined (and a log line) when it is refused. */
  private parse(o: KObject): { key: string; res: PolicyResource[] } | undefined {
    let key = "(unnamed)";
    try {
      key = idText(objectId(this.r.kind, o));
      const res = parsePolicies(policyDocument(this.r, o), this.file(key), {
        meshAuth: this.sink.engine.config.meshAuth,
      });
      return { key, res };
    } catch (e) {
      this.refused(key, e);
      return undefined;
    }
  }

  private refused(key: string, e: unknown): void {
    const id = key.split("/");
    this.logger.error(
      {
        kind: this.r.kind,
        ...(id.length === 2 ? { namespace: id[0], name: id[1] } : { name: key }),
        err: e instanceof Error ? e.message : String(e),
        ...(e instanceof MembraneError && e.issues
          ? { issues: e.issues.map((i) => `${i.path}: ${i.message}`) }
          : {}),
      },
      "kubernetes object refused: not applied (the last accepted version, if any, stays)",
    );
  }

  async upsert(o: KObject): Promise<void> {
    const p = this.parse(o);
    if (!p) return;
    try {
      await this.sink.applyPolicyResources(p.res, this.file(p.key));
      for (const r of p.res) this.applied.set(p.key, r.ref);
    } catch (e) {
      this.refused(p.key, e);
    }
  }

  async delete(o: KObject): Promise<void> {
    let key: string;
    try {
      key = idText(objectId(this.r.kind, o));
    } catch (e) {
      this.refused("(unnamed)", e);
      return;
    }
    await this.forget([key]);
  }

  async replace(items: readonly KObject[]): Promise<void> {
    this.adoptStored();
    const parsed = items.map((o) => this.parse(o)).filter((p): p is NonNullable<typeof p> => p !== undefined);
    const present = new Set(parsed.map((p) => p.key));
    await this.forget([...this.applied.keys()].filter((k) => !present.has(k)));
    if (parsed.length === 0) return;
    try {
      await this.sink.applyPolicyResources(
        parsed.flatMap((p) => p.res),
        this.file("list"),
      );
      for (const p of parsed) for (const r of p.res) this.applied.set(p.key, r.ref);
    } catch (e) {
      // One refused by the controller (not by validation) must not keep the others out: one by one.
      this.logger.warn(
        { kind: this.r.kind, err: String(e) },
        "kubernetes policies: applying the list failed; applying one by one",
      );
      for (const p of parsed) {
        try {
          await this.sink.applyPolicyResources(p.res, this.file(p.key));
          for (const r of p.res) this.applied.set(p.key, r.ref);
        } catch (e2) {
          this.refused(p.key, e2);
        }
      }
    }
  }

  /**
   * Policies of this kind that an earlier run of the watcher applied (the agent restores them from its
   * store, each with its source `k8s:<kind>/<key>`) count as applied by this one, so that a list also
   * removes the objects deleted from Kubernetes while the agent was down.
   */
  private adoptStored(): void {
    const prefix = this.file("");
    for (const p of this.sink.engine.listPolicies()) {
      const f = p.source?.file;
      if (f === undefined || !f.startsWith(prefix)) continue;
      const key = f.slice(prefix.length);
      if (!this.applied.has(key)) this.applied.set(key, p.ref);
    }
  }

  private async forget(keys: readonly string[]): Promise<void> {
    const refs = keys.map((k) => this.applied.get(k)).filter((r): r is PolicyRef => r !== undefined);
    if (refs.length === 0) return;
    try {
      await this.sink.deletePolicyRefs(refs, this.file("deleted"));
      for (const k of keys) this.applied.delete(k);
    } catch (e) {
      this.logger.error(
        { kind: this.r.kind, policies: keys, err: String(e) },
        "kubernetes policies: delete failed",
      );
    }
  }
}
