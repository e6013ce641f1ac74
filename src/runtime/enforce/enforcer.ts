/**
 * The runtime enforcer: TracingPolicies in, per policy one syscall guard
 * (our own sys_enter program, syscall-guard.ts) for the probes it can serve
 * (native-rules.ts) and one bpftrace program for the rest, each scoped to the
 * network namespaces of the endpoints its podSelector selects.
 *
 *   apply(policy) --scope(endpoints)--> splitProbes --> SyscallGuard (ready) + BpftraceProcess (READY) --> "loaded"
 *   endpoints change --> programs whose scope changed are replaced, make-before-break
 *   remove(policy) / stop() --> loaders stopped: their programs are detached
 *
 * A syscall guard that cannot load (its binary missing, a kernel that
 * refuses the program) hands its probes to bpftrace and says why in the
 * status (`fallback`), unless `syscallGuard: "native"` asks for it alone.
 *
 * Connect hooks of a policy with a podSelector (tcp_connect,
 * security_socket_connect) are served instead by a connect guard: cgroup
 * connect4/connect6 programs on the selected endpoints' cgroups
 * (connect-guard.ts), which refuse the connect() before any packet leaves.
 *
 * All or nothing: a policy's probes are at most one syscall guard and one
 * bpftrace program, each attaching every probe or exiting, plus at most one connect guard, which attaches to
 * every cgroup or exits, plus at most one fanotify responder (Override
 * selectors on file hooks, src/runtime/file/), started first; when one fails
 * the others are stopped. A replacement that fails leaves the previous
 * programs of that policy running (and the error is reported), a new policy
 * that fails leaves nothing attached.
 */
import { MembraneError } from "../../errors.js";
import { policyKey, type TracingPolicy } from "../policy/types.js";
import { startPolicyResponder } from "../file/policy-responder.js";
import { connectProbes } from "./connect-rules.js";
import type { RuntimePolicyEvent } from "./events.js";
import {
  startBpftrace,
  startConnectGuard,
  startSyscallGuard,
  type EnforcerEndpoint,
  type EnforcerParams,
  type LoadContext,
  type Running,
  type TracingPolicyState,
} from "./loaders.js";
import { splitProbes } from "./native-rules.js";
import type { ScriptGuards } from "./script.js";

export type { EnforcerEndpoint, EnforcerParams, TracingPolicyState } from "./loaders.js";

/**
 * Events delivered per policy per second before the rest is counted as lost (agent). It only cuts a
 * runaway policy: set above what the pipeline carries (bench/runtime-rate.ts), so that a flood is
 * lost where it must be (the kernel's ring buffer, counted) and not thrown away by a budget below
 * the pipeline's rate. Tetragon has no default budget (a Post action's optional rateLimit only).
 */
export const DEFAULT_EVENTS_PER_SECOND = 100_000;

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
  /** What serves the policy's probes: "syscall-guard", "bpftrace", "connect-guard", "fanotify". */
  readonly programs: readonly string[];
  /** Why the syscall guard's probes went to bpftrace instead (it could not load). */
  readonly fallback: string | undefined;
}

export class RuntimeEnforcer {
  private readonly policies = new Map<string, Running>();
  private endpoints: readonly EnforcerEndpoint[] = [];
  private readonly guards: ScriptGuards;
  private readonly ctx: LoadContext;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly p: EnforcerParams) {
    this.guards = { agentPid: p.agentPid ?? process.pid, hostNamespaces: p.hostNamespaces ?? {} };
    this.ctx = { p, guards: this.guards };
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
      await Promise.all([r.proc?.stop(), r.sys?.stop(), r.guard?.stop(), r.file?.stop()]);
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
          r.state = r.proc || r.sys || r.guard || r.file ? r.state : "error";
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
        [...this.policies.values()].flatMap((r) => [
          r.proc?.stop(),
          r.sys?.stop(),
          r.guard?.stop(),
          r.file?.stop(),
        ]),
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
      programs: [
        ...(r.sys ? ["syscall-guard"] : []),
        ...(r.proc ? ["bpftrace"] : []),
        ...(r.guard ? ["connect-guard"] : []),
        ...(r.file ? ["fanotify"] : []),
      ],
      fallback: r.fallback,
    };
  }

  private async load(policy: TracingPolicy, old: Running | undefined): Promise<Running> {
    const scope = this.scopeOf(policy);
    const r: Running = {
      policy,
      scopeKey: scope.key,
      endpoints: scope.count,
      proc: undefined,
      sys: undefined,
      fallback: undefined,
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
      await Promise.all([old?.proc?.stop(), old?.sys?.stop(), old?.guard?.stop(), old?.file?.stop()]);
      return r;
    }
    const what = `${policy.kind} ${policy.namespace ? policy.namespace + "/" : ""}${policy.name}`;
    const limit = this.p.eventsPerSecond ?? DEFAULT_EVENTS_PER_SECOND;
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
        r.guard = await startConnectGuard(
          this.ctx,
          policy,
          what,
          cprobes,
          scope.selected,
          r,
          deliver,
          lostKernel,
        );
      const split =
        this.p.syscallGuard === "bpftrace" ? { native: [], other: rest.probes } : splitProbes(rest.probes);
      const native = split.native;
      let other = split.other;
      if (native.length > 0) {
        try {
          r.sys = await startSyscallGuard(
            this.ctx,
            policy,
            what,
            native,
            scope.netns,
            r,
            deliver,
            lostKernel,
          );
        } catch (e) {
          if (this.p.syscallGuard === "native") throw e;
          r.fallback = e instanceof Error ? e.message : String(e);
          other = [...native, ...other];
        }
      }
      // A policy whose probes are all served by our own loaders needs no bpftrace program.
      if (other.length > 0)
        r.proc = await startBpftrace(
          this.ctx,
          { ...rest, probes: other },
          what,
          scope.netns,
          r,
          deliver,
          lostKernel,
        );
    } catch (e) {
      await Promise.all([r.sys?.stop(), r.guard?.stop(), r.file?.stop()]); // all or nothing
      throw e;
    }
    r.state = "loaded";
    // Make-before-break: the replacement is attached before the previous programs detach.
    await Promise.all([old?.proc?.stop(), old?.sys?.stop(), old?.guard?.stop(), old?.file?.stop()]);
    return r;
  }
}

export function isEnforcerError(e: unknown): e is MembraneError {
  return e instanceof MembraneError && e.code === "RUNTIME_ENFORCER_FAILED";
}
