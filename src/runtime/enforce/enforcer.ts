/**
 * The runtime enforcer: TracingPolicies in, one bpftrace program per policy
 * out, each scoped to the network namespaces of the endpoints its podSelector
 * selects.
 *
 *   apply(policy) --scope(endpoints)--> compileScript --> BpftraceProcess (READY) --> state "loaded"
 *   endpoints change --> programs whose scope changed are replaced, make-before-break
 *   remove(policy) / stop() --> bpftrace stopped: its programs are detached
 *
 * Connect hooks of a policy with a podSelector (tcp_connect,
 * security_socket_connect) are served instead by a connect guard: cgroup
 * connect4/connect6 programs on the selected endpoints' cgroups
 * (connect-guard.ts), which refuse the connect() before any packet leaves.
 *
 * All or nothing: a policy's probes are one bpftrace program, which attaches
 * every probe or exits, plus at most one connect guard, which attaches to
 * every cgroup or exits, plus at most one fanotify responder (Override
 * selectors on file hooks, src/runtime/file/), started first; when one fails
 * the others are stopped. A replacement that fails leaves the previous
 * programs of that policy running (and the error is reported), a new policy
 * that fails leaves nothing attached.
 */
import { statSync } from "node:fs";
import type { LabelSet } from "../../labels/label.js";
import { MembraneError } from "../../errors.js";
import { policyKey, type NamespaceType, type TracingPolicy } from "../policy/types.js";
import { startPolicyResponder } from "../file/policy-responder.js";
import type { FileResponder } from "../file/responder.js";
import { BpftraceProcess } from "./bpftrace.js";
import { ConnectGuard } from "./connect-guard.js";
import { connectEventToPolicy, connectProbes, connectRules } from "./connect-rules.js";
import type { RuntimeEventSink, RuntimePolicyEvent } from "./events.js";
import { toEvent } from "./output.js";
import { compileScript, type CompiledRule, type ScriptGuards } from "./script.js";

export interface EnforcerEndpoint {
  /** `namespace/name`. */
  readonly key: string;
  readonly labels: LabelSet;
  readonly netnsInode: number;
  /** The endpoint's cgroup v2 directory (src/datapath/endpoint-cgroup.ts), where connect hooks attach. */
  readonly cgroup?: string;
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
  /** Accesses denied (Override: fanotify FAN_DENY, or a refused connect()). */
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
  /** The connect guard binary (default: dist/bin/membrane-connect-guard). */
  readonly connectGuard?: string;
  readonly loadTimeoutMs?: number;
}

interface Running {
  policy: TracingPolicy;
  scopeKey: string;
  endpoints: number;
  proc: BpftraceProcess | undefined;
  guard: ConnectGuard | undefined;
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

  private scopeOf(policy: TracingPolicy): {
    key: string;
    netns: number[] | "node";
    count: number;
    selected: EnforcerEndpoint[];
  } {
    if (policy.podSelector === undefined) return { key: "node", netns: "node", count: 0, selected: [] };
    const sel = policy.podSelector;
    const selected = this.endpoints.filter((e) => sel.matches(e.labels));
    const inodes = [...new Set(selected.map((e) => e.netnsInode))].sort((a, b) => a - b);
    const cgroups = [...new Set(selected.map((e) => e.cgroup ?? ""))].sort();
    return { key: `${inodes.join(",")}|${cgroups.join(",")}`, netns: inodes, count: inodes.length, selected };
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
      await Promise.all([r.proc?.stop(), r.guard?.stop(), r.file?.stop()]);
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
          r.state = r.proc || r.guard || r.file ? r.state : "error";
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
      await Promise.all(
        [...this.policies.values()].flatMap((r) => [r.proc?.stop(), r.guard?.stop(), r.file?.stop()]),
      );
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
      // A connect hook served on endpoints is two programs (connect4, connect6).
      probes: r.policy.probes.reduce(
        (n, p) => n + (p.connect && r.policy.podSelector !== undefined ? 2 : p.attach.length),
        0,
      ),
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
      guard: undefined,
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
      await Promise.all([old?.proc?.stop(), old?.guard?.stop(), old?.file?.stop()]);
      return r;
    }
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
    const cprobes = connectProbes(policy);
    const rest: TracingPolicy = { ...policy, probes: policy.probes.filter((x) => !cprobes.includes(x)) };
    try {
      r.file = await startPolicyResponder({
        policy: rest,
        scope: { netns: scope.netns },
        guards: this.guards,
        what,
        ...(this.p.fanotifyResponder ? { binary: this.p.fanotifyResponder } : {}),
        onEvent: deliver,
        onLost: lostKernel,
        onExit: (why) => {
          // Not through stop(): the marks are gone; say so (fail visible, not silent).
          r.state = "error";
          r.error = `${what}: ${why}`;
          r.file = undefined;
        },
      });
      if (cprobes.length > 0)
        r.guard = await this.startGuard(policy, what, cprobes, scope.selected, r, deliver, lostKernel);
      // A policy whose probes are all served by fanotify or connect guards needs no bpftrace program.
      if (rest.probes.length > 0)
        r.proc = await this.startBpftrace(rest, what, scope.netns, r, deliver, lostKernel);
    } catch (e) {
      await Promise.all([r.guard?.stop(), r.file?.stop()]); // all or nothing
      throw e;
    }
    r.state = "loaded";
    // Make-before-break: the replacement is attached before the previous programs detach.
    await Promise.all([old?.proc?.stop(), old?.guard?.stop(), old?.file?.stop()]);
    return r;
  }

  private async startGuard(
    policy: TracingPolicy,
    what: string,
    probes: TracingPolicy["probes"],
    selected: readonly EnforcerEndpoint[],
    r: Running,
    deliver: (e: RuntimePolicyEvent) => void,
    lostKernel: (n: number) => void,
  ): Promise<ConnectGuard> {
    const missing = selected.filter((e) => e.cgroup === undefined).map((e) => e.key);
    if (missing.length > 0)
      throw new MembraneError(
        "RUNTIME_ENFORCER_FAILED",
        `Cannot load ${what}: connect hooks need the endpoints' cgroups, and ${missing.slice(0, 5).join(", ")} ${missing.length === 1 ? "has" : "have"} none`,
        {
          hint: "endpoints created by membrane get a cgroup; a container attached through CNI runs in its runtime's cgroup",
        },
      );
    const { rules, origins } = connectRules(probes);
    const netnsOfCgroup = new Map<string, number>();
    for (const e of selected) if (e.cgroup) netnsOfCgroup.set(String(statSync(e.cgroup).ino), e.netnsInode);
    return ConnectGuard.start({
      rules,
      cgroups: [...new Set(selected.map((e) => e.cgroup ?? ""))],
      what,
      ...(this.p.connectGuard ? { binary: this.p.connectGuard } : {}),
      ...(this.p.loadTimeoutMs ? { loadTimeoutMs: this.p.loadTimeoutMs } : {}),
      onEvent: (ce) => {
        const e = connectEventToPolicy(ce, {
          policyName: policy.name,
          policyNamespace: policy.namespace,
          origins,
          netnsOfCgroup,
          now: new Date(),
        });
        if (e) deliver(e);
      },
      onLost: lostKernel,
      onExit: (why) => {
        r.state = "error";
        r.error = `${what}: ${why}`;
        r.guard = undefined;
      },
    });
  }

  private startBpftrace(
    policy: TracingPolicy,
    what: string,
    netns: number[] | "node",
    r: Running,
    deliver: (e: RuntimePolicyEvent) => void,
    lostKernel: (n: number) => void,
  ): Promise<BpftraceProcess> {
    const compiled = compileScript(policy, { netns }, this.guards);
    r.rules = compiled.rules;
    return BpftraceProcess.start({
      script: compiled.text,
      what,
      ...(this.p.bpftrace ? { bpftrace: this.p.bpftrace } : {}),
      ...(this.p.loadTimeoutMs ? { loadTimeoutMs: this.p.loadTimeoutMs } : {}),
      onEvent: (fields) => {
        const now = new Date();
        const e = toEvent(fields, {
          policyName: policy.name,
          policyNamespace: policy.namespace,
          rules: r.rules,
          now,
        });
        if (e) deliver(e);
      },
      onLost: lostKernel,
      onExit: (why) => {
        // Not through stop(): the programs are gone; say so (fail visible, not silent).
        r.state = "error";
        r.error = `${what}: ${why}`;
        r.proc = undefined;
      },
    });
  }
}

export function isEnforcerError(e: unknown): e is MembraneError {
  return e instanceof MembraneError && e.code === "RUNTIME_ENFORCER_FAILED";
}
