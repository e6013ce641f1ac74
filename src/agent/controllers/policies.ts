/**
 * Policies: each stored once, in its normalised form (agent/policy-store.ts),
 * under `policies/<ref>`. A file is validated whole first: a rejected file
 * changes nothing. A policy whose normalised form is what the store holds is
 * "unchanged": no store write, no recompute, no kernel change, no new
 * revision. The store write is durable before the answer, all or none even
 * when it spans several transactions (store-txn.ts).
 */
import { MembraneError } from "../../errors.js";
import type { PolicyRef, PolicyResource } from "../../policy/types.js";
import type { TxnOp } from "../../store/store.js";
import { Revisions, type Controller, type ControllerDeps, type EnforceResult } from "../controller.js";
import { encodePolicy, policyKey as refKey, readPolicies } from "../policy-store.js";
import { KEYS } from "../records.js";
import { STORE_TXN_OPS } from "./identities.js";
import { txnAllOrNone } from "./store-txn.js";
import type { SyncedResource } from "../../cluster/synced.js";

export interface ApplyReport {
  readonly revision: number;
  readonly policies: readonly {
    kind: string;
    namespace?: string;
    name: string;
    status: "created" | "updated" | "deleted" | "unchanged";
  }[];
  readonly endpointsChanged: number;
  readonly kernelOps: number;
  readonly enforcedMs: number;
  /** Cluster mode: the etcd revision every node must realize (`apply --wait`). */
  readonly clusterRevision?: number;
}

export interface PoliciesDeps extends ControllerDeps {
  /** True while the kernel may lag the engine (an enforce started and has not succeeded since). */
  readonly kernelBehind: () => boolean;
}

export class PoliciesController implements Controller, SyncedResource {
  readonly name = "policies";
  readonly prefix = KEYS.policies;
  readonly revisions = new Revisions();
  /** Store key suffix -> the policy's canonical body (policy-store.ts), as stored. */
  private readonly records = new Map<string, string>();

  constructor(private readonly d: PoliciesDeps) {}

  get size(): number {
    return this.records.size;
  }

  async restore(): Promise<void> {
    const engine = this.d.engine();
    const stored = readPolicies((await this.d.store.list(KEYS.policies)).kvs, {
      meshAuth: engine.config.meshAuth,
      logger: this.d.logger,
    });
    for (let i = 0; i < stored.migrate.length; i += STORE_TXN_OPS) {
      await this.d.store.txn({ compare: [], ops: stored.migrate.slice(i, i + STORE_TXN_OPS) });
    }
    if (stored.migrate.length > 0)
      this.d.logger.info({ policies: stored.migrate.length }, "policy records rewritten as V2");
    for (const { key, res, body } of stored.policies) {
      this.records.set(key, body);
      engine.upsertPolicy(res);
    }
    if (stored.policies.length > 0) this.revisions.bump();
  }

  /** Another node's change (cluster mode, synced.ts): into the view and the engine, no store write. */
  syncRecord(key: string, value: string | undefined): boolean {
    const suffix = key.slice(KEYS.policies.length);
    const engine = this.d.engine();
    if (value === undefined) {
      if (!this.records.delete(suffix)) return false;
      const ref = engine.listPolicies().find((p) => refKey(p.ref) === suffix)?.ref;
      if (ref) engine.deletePolicy(ref);
      this.revisions.bump();
      return true;
    }
    const got = readPolicies([{ key, value }], { meshAuth: engine.config.meshAuth, logger: this.d.logger })
      .policies[0];
    if (!got || this.records.get(suffix) === got.body) return false;
    this.records.set(suffix, got.body);
    engine.upsertPolicy(got.res);
    this.revisions.bump();
    return true;
  }

  syncedKeys(): string[] {
    return [...this.records.keys()].map((k) => KEYS.policies + k);
  }

  /** Applies policies already parsed and validated. `signal`: the client went away (dropped if still queued). */
  apply(resources: readonly PolicyResource[], file: string, signal?: AbortSignal): Promise<ApplyReport> {
    return this.d.serial(
      async () => {
        const t0 = performance.now();
        const engine = this.d.engine();
        const statuses: ApplyReport["policies"][number][] = [];
        const changed: { key: string; res: PolicyResource; body: string }[] = [];
        const ops: TxnOp[] = [];
        for (const res of resources) {
          const key = refKey(res.ref);
          const old = this.records.get(key);
          const enc = encodePolicy(res);
          const status = old === undefined ? "created" : old === enc.body ? "unchanged" : "updated";
          statuses.push({ ...refOut(res.ref), status });
          if (status === "unchanged") continue;
          changed.push({ key, res, body: enc.body });
          ops.push({ type: "put", key: KEYS.policies + key, value: enc.value });
        }
        if (ops.length > 0) await this.write(ops);
        for (const c of changed) {
          this.records.set(c.key, c.body);
          engine.upsertPolicy(c.res);
        }
        if (changed.length > 0) this.revisions.bump();
        // Nothing new, and the kernel holds what the engine computed: no work at all.
        const r =
          changed.length > 0 || this.d.kernelBehind()
            ? await this.d.enforce().catch(storedNotEnforced)
            : { ops: 0, endpointsChanged: 0 };
        return report(engine.revision, statuses, r, t0);
      },
      signal,
      `apply ${file}`,
    );
  }

  /** Deletes the named policies, all or none. */
  delete(refs: readonly PolicyRef[], file: string, signal?: AbortSignal): Promise<ApplyReport> {
    return this.d.serial(
      async () => {
        const t0 = performance.now();
        const missing = refs.filter((r) => !this.records.has(refKey(r)));
        if (missing.length > 0) {
          throw new MembraneError(
            "POLICY_NOT_FOUND",
            `Cannot delete ${missing.map(refText).join(", ")}: not applied`,
            {
              hint: "`membrane get policies` lists what is applied.",
            },
          );
        }
        await this.write(refs.map((r) => ({ type: "delete" as const, key: KEYS.policies + refKey(r) })));
        const engine = this.d.engine();
        for (const r of refs) {
          this.records.delete(refKey(r));
          engine.deletePolicy(r);
        }
        this.revisions.bump();
        const r = await this.d.enforce().catch(storedNotEnforced);
        const statuses = refs.map((x) => ({ ...refOut(x), status: "deleted" as const }));
        return report(engine.revision, statuses, r, t0);
      },
      signal,
      `delete the policies of ${file}`,
    );
  }

  /**
   * Stores a file's changes all or none, in transactions an etcd store takes
   * (store-txn.ts); before the in-memory view changes, so a failure leaves
   * the store, the view and the engine as they were.
   */
  private async write(ops: readonly TxnOp[]): Promise<void> {
    // What the store held: the engine's policies, as stored. Looked up only to undo (a failure).
    let byKey: Map<string, PolicyResource> | undefined;
    await txnAllOrNone({
      store: this.d.store,
      ops,
      before: (key) => {
        byKey ??= new Map(
          this.d
            .engine()
            .listPolicies()
            .map((p) => [KEYS.policies + refKey(p.ref), p]),
        );
        const res = this.records.has(key.slice(KEYS.policies.length)) ? byKey.get(key) : undefined;
        return res && encodePolicy(res).value;
      },
      undoFailed: (e) =>
        this.d.logger.error(
          { err: String(e) },
          "undoing a failed policy write failed: the store may hold part of it",
        ),
    });
  }

  list(): {
    kind: string;
    namespace?: string;
    name: string;
    rules: number;
    audit: boolean;
    selects: number;
  }[] {
    const engine = this.d.engine();
    const policies = engine.listPolicies();
    // Endpoints each policy selects, in one pass: the rules selecting an identity are looked up
    // once per identity (not per policy and endpoint), each rule led back to its policy.
    const policyOf = new Map(policies.flatMap((p, i) => p.rules.map((r) => [r, i] as const)));
    const perIdentity = new Map<number, Set<number>>();
    const selects = policies.map(() => 0);
    for (const e of engine.listEndpoints()) {
      let hit = perIdentity.get(e.identity.id);
      if (!hit) {
        hit = new Set(engine.rulesSelecting(e.identity.id).map((r) => policyOf.get(r) ?? -1));
        perIdentity.set(e.identity.id, hit);
      }
      for (const i of hit) if (i >= 0) selects[i] = (selects[i] ?? 0) + 1;
    }
    return policies.map((p: PolicyResource, i) => ({
      ...refOut(p.ref),
      rules: p.rules.length,
      audit: p.audit,
      selects: selects[i] ?? 0,
    }));
  }
}

function report(
  revision: number,
  policies: ApplyReport["policies"],
  r: Pick<EnforceResult, "ops" | "endpointsChanged">,
  t0: number,
): ApplyReport {
  return {
    revision,
    policies,
    endpointsChanged: r.endpointsChanged,
    kernelOps: r.ops,
    enforcedMs: Math.round(performance.now() - t0),
  };
}

function refText(r: PolicyRef): string {
  return `${r.kind} ${r.namespace ? r.namespace + "/" : ""}${r.name}`;
}

function refOut(r: PolicyRef): { kind: string; namespace?: string; name: string } {
  return r.namespace !== undefined
    ? { kind: r.kind, namespace: r.namespace, name: r.name }
    : { kind: r.kind, name: r.name };
}

/** An enforce that failed after the store took the change: say that it is stored, not lost. */
function storedNotEnforced(e: unknown): never {
  if (!(e instanceof MembraneError)) throw e;
  throw new MembraneError(e.code, e.message, {
    cause: e,
    hint: "The change is stored (`membrane get policies` shows it) but the kernel does not hold it yet; the next apply, resync or agent start enforces it.",
  });
}
