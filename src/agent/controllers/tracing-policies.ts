/**
 * TracingPolicies on this node: `membrane apply` of a TracingPolicy /
 * TracingPolicyNamespaced, through the runtime enforcer.
 *
 *   POST /v1/tracingpolicies {text, file} --parse (whole file)--> enforcer.apply each
 *                                          (a failure rolls back the file: a rejected request changes nothing)
 *   endpoints (create, delete, periodic check) --> enforcer.setEndpoints (netns inodes, labels)
 *   events --> sink (the runtime exporter, wired by the agent) + a bounded recent list + log
 *
 * Stored (agent/tracing-policy-store.ts) once every policy of the file is
 * enforced, and restored and enforced again by `restore()` before the API
 * serves: a restart comes back with the same policies, a deleted one stays
 * deleted. An agent stop or crash still detaches every program (bpftrace dies
 * with the agent, enforce/bpftrace.ts): nothing kills without an agent; the
 * gap lasts until the next start has restored them.
 */
import { ensureEndpointCgroup, sweepEndpointCgroups } from "../../datapath/endpoint-cgroup.js";
import { statSync } from "node:fs";
import type { Logger } from "pino";
import { workloadLabels } from "../../labels/k8s.js";
import { LabelSet } from "../../labels/label.js";
import {
  RuntimeEnforcer,
  type EnforcerEndpoint,
  type TracingPolicyStatus,
} from "../../runtime/enforce/enforcer.js";
import type { LostCounts, RuntimeEventSink, RuntimePolicyEvent } from "../../runtime/enforce/events.js";
import { parseTracingPolicies } from "../../runtime/policy/parse.js";
import { policyKey, type TracingPolicy } from "../../runtime/policy/types.js";
import type { Store, TxnOp } from "../../store/store.js";
import { MembraneError } from "../../errors.js";
import {
  encodeTracingRecord,
  readTracingPolicies,
  TRACING_PREFIX,
  tracingKey,
} from "../tracing-policy-store.js";
import type { EndpointView } from "./endpoint-record.js";
import { txnAllOrNone } from "./store-txn.js";

/** Recent events kept for `membrane get tracingpolicies` and the demo. */
const RECENT = 256;
/** How often the endpoint set is compared with what the programs select (only a change costs a reload). */
const CHECK_MS = 2_000;
/** The device of the namespace filesystem (nsfs), read once. */
let nsfsDev: number | undefined;

export interface TracingApplyReport {
  readonly policies: readonly TracingPolicyStatus[];
}

export class TracingPoliciesController {
  private readonly enforcer: RuntimeEnforcer;
  private readonly applied = new Map<string, TracingPolicy>();
  private readonly recentEvents: RuntimePolicyEvent[] = [];
  private sink: RuntimeEventSink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastKey = "";
  private readonly inodes = new Map<string, number>();
  /** Store key -> the record the store holds (to undo a failed write). */
  private readonly stored = new Map<string, string>();
  /** Applies and deletes one at a time (the store write follows the enforce of the same request). */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly p: {
      readonly logger: Logger;
      readonly endpoints: () => readonly EndpointView[];
      /** Where applied policies are kept across restarts; without one they live in memory only. */
      readonly store?: Store;
    },
  ) {
    this.enforcer = new RuntimeEnforcer({
      sink: {
        onPolicyEvent: (e) => this.event(e),
        onLost: (name, lost) => this.lost(name, lost),
      },
    });
  }

  /** Where events go besides the log (the runtime exporter). */
  setSink(sink: RuntimeEventSink | undefined): void {
    this.sink = sink;
  }

  start(): void {
    this.timer = setInterval(() => void this.endpointsChanged(), CHECK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.enforcer.stop();
    this.applied.clear();
  }

  /**
   * Reads the stored policies and enforces them (agent start, before the API
   * serves). A policy that cannot load now is logged and kept stored: it is
   * listed nowhere until the next apply or start loads it.
   */
  async restore(): Promise<void> {
    const store = this.p.store;
    if (!store) return;
    const stored = readTracingPolicies((await store.list(TRACING_PREFIX)).kvs, this.p.logger);
    if (stored.length === 0) return;
    await this.endpointsChanged(true);
    for (const s of stored) {
      this.stored.set(s.key, encodeTracingRecord(s.text, s.file));
      try {
        await this.enforcer.apply(s.policy);
        this.applied.set(policyKey(s.policy), s.policy);
      } catch (e) {
        this.p.logger.error({ policy: s.key, err: String(e) }, "stored TracingPolicy could not be enforced");
      }
    }
    this.p.logger.info({ policies: this.applied.size }, "TracingPolicies restored");
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const r = this.chain.then(f, f);
    this.chain = r.catch(() => undefined);
    return r;
  }

  /** Writes `ops` all or none; a failure is STORE_FAILED and leaves the store as it was. */
  private async write(ops: readonly TxnOp[]): Promise<void> {
    const store = this.p.store;
    if (!store || ops.length === 0) return;
    try {
      await txnAllOrNone({
        store,
        ops,
        before: (key) => this.stored.get(key),
        undoFailed: (e) =>
          this.p.logger.error({ err: String(e) }, "undoing a failed TracingPolicy write failed"),
      });
    } catch (e) {
      throw new MembraneError("STORE_FAILED", `Cannot store the TracingPolicies: ${String(e)}`, {
        cause: e,
      });
    }
    for (const op of ops) {
      if (op.type === "put") this.stored.set(op.key, op.value);
      else this.stored.delete(op.key);
    }
  }

  async apply(text: string, file: string): Promise<TracingApplyReport> {
    // Validated whole before anything is loaded or stored: a rejected file changes nothing.
    const policies = parseTracingPolicies(text, file);
    return this.serial(() => this.applyParsed(policies, text, file));
  }

  private async applyParsed(
    policies: readonly TracingPolicy[],
    text: string,
    file: string,
  ): Promise<TracingApplyReport> {
    if (policies.length === 0) return { policies: [] };
    await this.endpointsChanged(true);
    const done: TracingPolicy[] = [];
    try {
      for (const p of policies) {
        await this.enforcer.apply(p);
        done.push(p);
      }
    } catch (e) {
      // All or nothing per file: put back what this request replaced, remove what it added.
      for (const p of done.reverse()) {
        const before = this.applied.get(policyKey(p));
        if (before) await this.enforcer.apply(before).catch(() => undefined);
        else await this.enforcer.remove(p);
      }
      throw e;
    }
    try {
      // Stored once enforced: a restart restores only what was accepted.
      const value = encodeTracingRecord(text, file);
      await this.write(policies.map((p) => ({ type: "put" as const, key: tracingKey(p), value })));
    } catch (e) {
      for (const p of [...policies].reverse()) {
        const before = this.applied.get(policyKey(p));
        if (before) await this.enforcer.apply(before).catch(() => undefined);
        else await this.enforcer.remove(p);
      }
      throw e;
    }
    for (const p of policies) this.applied.set(policyKey(p), p);
    const keys = new Set(policies.map(policyKey));
    return { policies: this.enforcer.list().filter((s) => keys.has(policyKey(s))) };
  }

  async delete(text: string, file: string): Promise<TracingApplyReport> {
    const policies = parseTracingPolicies(text, file);
    return this.serial(() => this.deleteParsed(policies));
  }

  private async deleteParsed(policies: readonly TracingPolicy[]): Promise<TracingApplyReport> {
    // Deleted from the store first: a policy deleted here never comes back at the next start.
    await this.write(
      policies
        .filter((p) => this.stored.has(tracingKey(p)))
        .map((p) => ({ type: "delete" as const, key: tracingKey(p) })),
    );
    const out: TracingPolicyStatus[] = [];
    for (const p of policies) {
      const st = this.enforcer.list().find((s) => policyKey(s) === policyKey(p));
      if (await this.enforcer.remove(p)) {
        this.applied.delete(policyKey(p));
        if (st) out.push({ ...st, state: "idle", endpoints: 0 });
      }
    }
    return { policies: out };
  }

  list(): TracingPolicyStatus[] {
    return this.enforcer.list();
  }

  recent(): readonly RuntimePolicyEvent[] {
    return this.recentEvents;
  }

  /**
   * Re-reads the endpoints; programs whose selection changed are replaced
   * before this resolves. Free when no TracingPolicy is applied (endpoint
   * creation calls it), unless `force`d.
   */
  async endpointsChanged(force = false): Promise<void> {
    if (!force && this.applied.size === 0) return;
    const views = this.p.endpoints();
    // The key names what the enforcer is given, inodes included: an endpoint listed before its
    // namespace exists (being created) is left out now and counted as a change once it is there.
    // A key of the listing alone would cache that incomplete set, and the endpoint's own create
    // would then find "no change" and hand it out uncovered.
    const present = views.flatMap((v) => {
      const ino = this.inode(v.netns);
      return ino === undefined ? [] : [{ v, ino }];
    });
    const key = present
      .map(({ v, ino }) => `${v.namespace}/${v.name}@${v.netns}#${ino}:${JSON.stringify(v.labels)}`)
      .join("\n");
    if (key === this.lastKey) return;
    const eps: EnforcerEndpoint[] = [];
    for (const { v, ino } of present) {
      const cgroup = ensureEndpointCgroup(v.netns);
      eps.push({
        key: `${v.namespace}/${v.name}`,
        labels: labelsOf(v),
        netnsInode: ino,
        ...(cgroup === undefined ? {} : { cgroup }),
      });
    }
    sweepEndpointCgroups();
    await this.enforcer.setEndpoints(eps);
    this.lastKey = key;
  }

  /**
   * The inode of an endpoint's network namespace, or undefined while it is not one yet: `ip netns
   * add` creates the file under /run/netns before it bind-mounts the namespace on it, and the
   * plain file's inode would name no namespace (the endpoint uncovered). Only an nsfs inode counts
   * (same device as our own namespace's). Not cached: a name may come back as another namespace.
   */
  private inode(netns: string): number | undefined {
    try {
      const st = statSync(netns.startsWith("/") ? netns : `/run/netns/${netns}`);
      nsfsDev ??= statSync("/proc/self/ns/net").dev;
      if (st.dev !== nsfsDev) return undefined;
      this.inodes.set(netns, st.ino);
      return st.ino;
    } catch {
      return undefined;
    }
  }

  private event(e: RuntimePolicyEvent): void {
    this.recentEvents.push(e);
    if (this.recentEvents.length > RECENT) this.recentEvents.shift();
    // A kill or a signal is logged; Post events are the export's, logged at debug: at info a flood of
    // them was as many synchronous log writes (the agent logs to stderr, one write(2) per line).
    const level = e.action === "KPROBE_ACTION_POST" ? "debug" : "info";
    if (this.p.logger.isLevelEnabled(level)) {
      const ep = this.p.endpoints().find((v) => this.inodes.get(v.netns) === e.netnsInode);
      this.p.logger[level](
        {
          policy: e.policyName,
          action: e.action,
          function: e.functionName,
          pid: e.pid,
          comm: e.comm,
          endpoint: ep ? `${ep.namespace}/${ep.name}` : undefined,
        },
        "runtime policy matched",
      );
    }
    this.sink?.onPolicyEvent(e);
  }

  private lost(name: string, lost: LostCounts): void {
    this.sink?.onLost?.(name, lost);
  }
}

function labelsOf(v: EndpointView): LabelSet {
  try {
    return workloadLabels({ namespace: v.namespace, labels: v.labels });
  } catch {
    return LabelSet.fromMap({ ...v.labels, "io.kubernetes.pod.namespace": v.namespace });
  }
}
