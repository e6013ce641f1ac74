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
 * leaves nothing attached. Override selectors on file hooks are served by a
 * fanotify responder per policy (src/runtime/file/), started before the
 * program and stopped again if the program fails.
 */
import type { LabelSet } from "../../labels/label.js";
import { MembraneError } from "../../errors.js";
import { policyKey, type NamespaceType, type TracingPolicy } from "../policy/types.js";
import { startPolicyResponder } from "../file/policy-responder.js";
import type { FileResponder } from "../file/responder.js";
import { BpftraceProcess } from "./bpftrace.js";
import type { RuntimeEventSink, RuntimePolicyEvent } from "./events.js";
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
  /** Accesses denied by the fanotify responder (Override). */
  readonly denials: number;
  readonly lost: { kernel: number; agent: number };
}

export interface EnforcerParams {
  readonly sink: RuntimeEventSink;
  readonly agentPid?: number;
  readonly hostNamespaces?: Partial<Record<NamespaceType, number>>;
  /** Events delivered per policy per second; more are counted as lost (agent). */
  readonly eventsPerSecond?: number;
  readonly bpftrace?: string;
  /** The fanotify responder binary (default dist/bin/membrane-fanotify). */
  readonly fanotifyResponder?: string;
  readonly loadTimeoutMs?: number;
}

interface Running {
  policy: TracingPolicy;
  scopeKey: string;
  endpoints: number;
  proc: BpftraceProcess | undefined;
  file: FileResponder | undefined;
  rules: readonly CompiledRule[];
  state: TracingPolicyState;
  error: string | undefined;
  events: number;
  kills: number;
  denials: number;
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
      await Promise.all([r.proc?.stop(), r.file?.stop()]);
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
          r.state = r.proc || r.file ? r.state : "error";
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
      await Promise.all([...this.policies.values()].flatMap((r) => [r.proc?.stop(), r.file?.stop()]));
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
      denials: r.denials,
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
      file: undefined,
      rules: [],
      state: "idle",
      error: undefined,
      events: old?.events ?? 0,
      kills: old?.kills ?? 0,
      denials: old?.denials ?? 0,
      lostKernel: old?.lostKernel ?? 0,
      lostAgent: old?.lostAgent ?? 0,
      bucket: { second: 0, used: 0 },
    };
    if (scope.netns !== "node" && scope.netns.length === 0) {
      await Promise.all([old?.proc?.stop(), old?.file?.stop()]);
      return r;
    }
    const compiled = compileScript(policy, { netns: scope.netns }, this.guards);
    r.rules = compiled.rules;
    const what = `${policy.kind} ${policy.namespace ? policy.namespace + "/" : ""}${policy.name}`;
    const limit = this.p.eventsPerSecond ?? 10_000;
    const deliver = (e: RuntimePolicyEvent): void => {
      const sec = Math.floor(e.time.getTime() / 1000);
      if (r.bucket.second !== sec) r.bucket = { second: sec, used: 0 };
      r.events++;
      if (e.action === "KPROBE_ACTION_OVERRIDE") r.denials++;
      else if (e.action !== "KPROBE_ACTION_POST") r.kills++;
      if (++r.bucket.used > limit) {
        r.lostAgent++;
        this.p.sink.onLost?.(policy.name, { kernel: 0, agent: 1 });
        return;
      }
      this.p.sink.onPolicyEvent(e);
    };
    const lostKernel = (n: number): void => {
      r.lostKernel += n;
      this.p.sink.onLost?.(policy.name, { kernel: n, agent: 0 });
    };
    const exited = (why: string): void => {
      // Not through stop(): the programs or marks are gone; say so (fail visible, not silent).
      r.state = "error";
      r.error = `${what}: ${why}`;
    };
    r.file = await startPolicyResponder({
      policy,
      scope: { netns: scope.netns },
      guards: this.guards,
      what,
      ...(this.p.fanotifyResponder ? { binary: this.p.fanotifyResponder } : {}),
      onEvent: deliver,
      onLost: lostKernel,
      onExit: (why) => {
        exited(why);
        r.file = undefined;
      },
    });
    // A policy whose probes are all Override on file hooks needs no bpftrace program.
    if (compiled.rules.length > 0) {
      try {
        r.proc = await BpftraceProcess.start({
          script: compiled.text,
          what,
          ...(this.p.bpftrace ? { bpftrace: this.p.bpftrace } : {}),
          ...(this.p.loadTimeoutMs ? { loadTimeoutMs: this.p.loadTimeoutMs } : {}),
          onEvent: (fields) => {
            const e = toEvent(fields, {
              policyName: policy.name,
              policyNamespace: policy.namespace,
              rules: r.rules,
              now: new Date(),
            });
            if (e) deliver(e);
          },
          onLost: lostKernel,
          onExit: (why) => {
            exited(why);
            r.proc = undefined;
          },
        });
      } catch (e) {
        await r.file?.stop(); // all or nothing: no marks without the policy's program
        throw e;
      }
    }
    r.state = "loaded";
    // Make-before-break: the replacement is attached before the previous program detaches.
    await Promise.all([old?.proc?.stop(), old?.file?.stop()]);
    return r;
  }
}

export function isEnforcerError(e: unknown): e is MembraneError {
  return e instanceof MembraneError && e.code === "RUNTIME_ENFORCER_FAILED";
}
