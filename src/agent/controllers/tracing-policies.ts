/**
 * TracingPolicies on this node: `membrane apply` of a TracingPolicy /
 * TracingPolicyNamespaced, through the runtime enforcer.
 *
 *   POST /v1/tracingpolicies {text, file} --parse (whole file)--> enforcer.apply each
 *                                          (a failure rolls back the file: a rejected request changes nothing)
 *   endpoints (create, delete, periodic check) --> enforcer.setEndpoints (netns inodes, labels)
 *   events --> sink (the runtime exporter, wired by the agent) + a bounded recent list + log
 *
 * Held in memory: an agent restart starts with none, and an agent stop or
 * crash detaches every program (bpftrace dies with the agent, enforce/bpftrace.ts).
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
import type { EndpointView } from "./endpoint-record.js";

/** Recent events kept for `membrane get tracingpolicies` and the demo. */
const RECENT = 256;
/** How often the endpoint set is compared with what the programs select (only a change costs a reload). */
const CHECK_MS = 2_000;

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

  constructor(
    private readonly p: {
      readonly logger: Logger;
      readonly endpoints: () => readonly EndpointView[];
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

  async apply(text: string, file: string): Promise<TracingApplyReport> {
    const policies = parseTracingPolicies(text, file);
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
    for (const p of policies) this.applied.set(policyKey(p), p);
    const keys = new Set(policies.map(policyKey));
    return { policies: this.enforcer.list().filter((s) => keys.has(policyKey(s))) };
  }

  async delete(text: string, file: string): Promise<TracingApplyReport> {
    const policies = parseTracingPolicies(text, file);
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
    const key = views
      .map((v) => `${v.namespace}/${v.name}@${v.netns}:${JSON.stringify(v.labels)}`)
      .join("\n");
    if (key === this.lastKey) return;
    const eps: EnforcerEndpoint[] = [];
    for (const v of views) {
      const ino = this.inode(v.netns);
      if (ino === undefined) continue;
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

  private inode(netns: string): number | undefined {
    const cached = this.inodes.get(netns);
    if (cached !== undefined) return cached;
    try {
      const ino = statSync(netns.startsWith("/") ? netns : `/run/netns/${netns}`).ino;
      this.inodes.set(netns, ino);
      return ino;
    } catch {
      return undefined;
    }
  }

  private event(e: RuntimePolicyEvent): void {
    this.recentEvents.push(e);
    if (this.recentEvents.length > RECENT) this.recentEvents.shift();
    const ep = this.p.endpoints().find((v) => this.inodes.get(v.netns) === e.netnsInode);
    this.p.logger.info(
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
