/**
 * The runtime enforcer: TracingPolicies in, one bpftrace program per policy
 * out, each scoped to the network namespaces of the endpoints its podSelector
 * selects.
 *
 *   apply(policy) --scope(endpoints)--> compileScript --> BpftraceProcess (READY) --> state "loaded"
 *   endpoints change --> programs whose scope changed are replaced, make-before-break
 *   remove(policy) / stop() --> bpftrace stopped: its programs are detached
 *
 * All or nothing: a policy's probes are one bpftrace program, which attaches
 * every probe or exits; a replacement that fails leaves the previous program
 * of that policy running (and the error is reported), a new policy that fails
 * leaves nothing attached.
 */
import type { LabelSet } from "../../labels/label.js";
import { MembraneError } from "../../errors.js";
import { policyKey, type NamespaceType, type TracingPolicy } from "../policy/types.js";
import { BpftraceProcess } from "./bpftrace.js";
import type { RuntimeEventSink } from "./events.js";
import { toEvent } from "./output.js";
import { compileScript, type CompiledRule, type ScriptGuards } from "./script.js";

export interface EnforcerEndpoint {
  /** `namespace/name`. */
  readonly key: string;
  readonly labels: LabelSet;
  readonly netnsInode: number;
}

export type TracingPolicyState = "loaded" | "idle" | "error";

export interface TracingPolicyStatus {
  readonly kind: TracingPolicy["kind"];
  readonly name: string;
  readonly namespace: string | undefined;
  /** loaded: programs attached; idle: selects no endpoint (nothing attached); error: see `error`. */
  readonly state: TracingPolicyState;
  readonly endpoints: number;
  readonly probes: number;
  readonly error: string | undefined;
  readonly events: number;
  readonly kills: number;
  readonly lost: { kernel: number; agent: number };
}

export interface EnforcerParams {
  readonly sink: RuntimeEventSink;
  readonly agentPid?: number;
  readonly hostNamespaces?: Partial<Record<NamespaceType, number>>;
  /** Events delivered per policy per second; more are counted as lost (agent). */
  readonly eventsPerSecond?: number;
  readonly bpftrace?: string;
  readonly loadTimeoutMs?: number;
}

interface Running {
  policy: TracingPolicy;
  scopeKey: string;
  endpoints: number;
  proc: BpftraceProcess | undefined;
  rules: readonly CompiledRule[];
  state: TracingPolicyState;
  error: string | undefined;
  events: number;
  kills: number;
  lostKernel: number;
  lostAgent: number;
  bucket: { second: number; used: number };
}

export class RuntimeEnforcer {
  private readonly policies = new Map<string, Running>();
  private endpoints: readonly EnforcerEndpoint[] = [];
  private readonly guards: ScriptGuards;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly p: EnforcerParams) {
    this.guards = { agentPid: p.agentPid ?? process.pid, hostNamespaces: p.hostNamespaces ?? {} };
  }

  /** Serialises changes: one load or replacement at a time. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const r = this.chain.then(f, f);
    this.chain = r.catch(() => undefined);
    return r;
  }

  private scopeOf(policy: TracingPolicy): { key: string; netns: number[] | "node"; count: number } {
    if (policy.podSelector === undefined) return { key: "node", netns: "node", count: 0 };
    const sel = policy.podSelector;
    const inodes = [
      ...new Set(this.endpoints.filter((e) => sel.matches(e.labels)).map((e) => e.netnsInode)),
    ].sort((a, b) => a - b);
    return { key: inodes.join(","), netns: inodes, count: inodes.length };
  }

  /** Loads or replaces `policy`; throws RUNTIME_ENFORCER_FAILED when a new program cannot load (nothing half-attached). */
  apply(policy: TracingPolicy): Promise<TracingPolicyStatus> {
    return this.serial(async () => {
      const key = policyKey(policy);
      const old = this.policies.get(key);
      const r = await this.load(policy, old);
      this.policies.set(key, r);
      return this.view(r);
    });
  }

  remove(policy: Pick<TracingPolicy, "kind" | "namespace" | "name">): Promise<boolean> {
    return this.serial(async () => {
      const key = policyKey(policy);
      const r = this.policies.get(key);
      if (!r) return false;
      this.policies.delete(key);
      await r.proc?.stop();
      return true;
    });
  }

  /** New endpoint set: programs whose scope changed are replaced (new program ready before the old one stops). */
  setEndpoints(eps: readonly EnforcerEndpoint[]): Promise<void> {
    return this.serial(async () => {
      this.endpoints = eps;
      for (const [key, r] of this.policies) {
        if (this.scopeOf(r.policy).key === r.scopeKey && r.state !== "error") continue;
        try {
          this.policies.set(key, await this.load(r.policy, r));
        } catch (e) {
          // The previous program (if any) keeps running; the status says why it was not replaced.
          r.state = r.proc ? r.state : "error";
          r.error = e instanceof Error ? e.message : String(e);
        }
      }
    });
  }

  list(): TracingPolicyStatus[] {
    return [...this.policies.values()].map((r) => this.view(r));
  }

  async stop(): Promise<void> {
    await this.serial(async () => {
      await Promise.all([...this.policies.values()].map((r) => r.proc?.stop()));
      this.policies.clear();
    });
  }

  private view(r: Running): TracingPolicyStatus {
    return {
      kind: r.policy.kind,
      name: r.policy.name,
      namespace: r.policy.namespace,
      state: r.state,
      endpoints: r.endpoints,
      probes: r.policy.probes.reduce((n, p) => n + p.attach.length, 0),
      error: r.error,
      events: r.events,
      kills: r.kills,
      lost: { kernel: r.lostKernel, agent: r.lostAgent },
    };
  }

  private async load(policy: TracingPolicy, old: Running | undefined): Promise<Running> {
    const scope = this.scopeOf(policy);
    const r: Running = {
      policy,
      scopeKey: scope.key,
      endpoints: scope.count,
      proc: undefined,
      rules: [],
      state: "idle",
      error: undefined,
      events: old?.events ?? 0,
      kills: old?.kills ?? 0,
      lostKernel: old?.lostKernel ?? 0,
      lostAgent: old?.lostAgent ?? 0,
      bucket: { second: 0, used: 0 },
    };
    if (scope.netns !== "node" && scope.netns.length === 0) {
      await old?.proc?.stop();
      return r;
    }
    const compiled = compileScript(policy, { netns: scope.netns }, this.guards);
    r.rules = compiled.rules;
    const what = `${policy.kind} ${policy.namespace ? policy.namespace + "/" : ""}${policy.name}`;
    const limit = this.p.eventsPerSecond ?? 10_000;
    r.proc = await BpftraceProcess.start({
      script: compiled.text,
      what,
      ...(this.p.bpftrace ? { bpftrace: this.p.bpftrace } : {}),
      ...(this.p.loadTimeoutMs ? { loadTimeoutMs: this.p.loadTimeoutMs } : {}),
      onEvent: (fields) => {
        const now = new Date();
        const sec = Math.floor(now.getTime() / 1000);
        if (r.bucket.second !== sec) r.bucket = { second: sec, used: 0 };
        const e = toEvent(fields, {
          policyName: policy.name,
          policyNamespace: policy.namespace,
          rules: r.rules,
          now,
        });
        if (!e) return;
        r.events++;
        if (e.action !== "KPROBE_ACTION_POST") r.kills++;
        if (++r.bucket.used > limit) {
          r.lostAgent++;
          this.p.sink.onLost?.(policy.name, { kernel: 0, agent: 1 });
          return;
        }
        this.p.sink.onPolicyEvent(e);
      },
      onLost: (n) => {
        r.lostKernel += n;
        this.p.sink.onLost?.(policy.name, { kernel: n, agent: 0 });
      },
      onExit: (why) => {
        // Not through stop(): the programs are gone; say so (fail visible, not silent).
        r.state = "error";
        r.error = `${what}: ${why}`;
        r.proc = undefined;
      },
    });
    r.state = "loaded";
    // Make-before-break: the replacement is attached before the previous program detaches.
    await old?.proc?.stop();
    return r;
  }
}

export function isEnforcerError(e: unknown): e is MembraneError {
  return e instanceof MembraneError && e.code === "RUNTIME_ENFORCER_FAILED";
}
