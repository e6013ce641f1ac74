/**
 * The loaders behind one TracingPolicy (enforcer.ts decides which serve
 * which probes): the connect guard, the syscall guard and bpftrace, each
 * started with the policy's event delivery and a way to say it died.
 *
 *   Running (one policy's state) + LoadContext --startX--> a loader whose exit marks the policy "error"
 */
import { statSync } from "node:fs";
import type { LabelSet } from "../../labels/label.js";
import { MembraneError } from "../../errors.js";
import type { NamespaceType, TracingPolicy } from "../policy/types.js";
import type { FileResponder } from "../file/responder.js";
import { withBtf } from "../source/btf-cache.js";
import { BpftraceProcess } from "./bpftrace.js";
import { ConnectGuard } from "./connect-guard.js";
import { connectEventToPolicy, connectRules } from "./connect-rules.js";
import type { RuntimeEventSink, RuntimePolicyEvent } from "./events.js";
import { toEvent } from "./output.js";
import { compileScript, type CompiledRule, type ScriptGuards } from "./script.js";
import { SyscallGuard } from "./syscall-guard.js";

export type TracingPolicyState = "loaded" | "idle" | "error";

/** An endpoint as the enforcer sees it. */
export interface EnforcerEndpoint {
  /** `namespace/name`. */
  readonly key: string;
  readonly labels: LabelSet;
  readonly netnsInode: number;
  /** The endpoint's cgroup v2 directory (src/datapath/endpoint-cgroup.ts), where connect hooks attach. */
  readonly cgroup?: string;
}

export interface EnforcerParams {
  readonly sink: RuntimeEventSink;
  readonly agentPid?: number;
  readonly hostNamespaces?: Partial<Record<NamespaceType, number>>;
  /** Events delivered per policy per second; more are counted as lost (agent). Default: enforcer.ts DEFAULT_EVENTS_PER_SECOND. */
  readonly eventsPerSecond?: number;
  readonly bpftrace?: string;
  /** The fanotify responder binary (default dist/bin/membrane-fanotify). */
  readonly fanotifyResponder?: string;
  /** The connect guard binary (default: dist/bin/membrane-connect-guard). */
  readonly connectGuard?: string;
  /** The syscall guard binary (default: dist/bin/membrane-syscall-guard). */
  readonly syscallGuardBinary?: string;
  /** auto: the syscall guard, bpftrace when it cannot load; native: the guard or an error; bpftrace: never the guard. */
  readonly syscallGuard?: "auto" | "native" | "bpftrace";
  /** The BTF offsets cache's directory (btf-cache.ts; default /run/membrane-btf, "" disables it). */
  readonly btfCacheDir?: string;
  readonly loadTimeoutMs?: number;
}

export interface Running {
  policy: TracingPolicy;
  scopeKey: string;
  endpoints: number;
  proc: BpftraceProcess | undefined;
  sys: SyscallGuard | undefined;
  fallback: string | undefined;
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

/** What every loader of one policy load shares. */
export interface LoadContext {
  readonly p: EnforcerParams;
  readonly guards: ScriptGuards;
}

export async function startConnectGuard(
  c: LoadContext,
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
    ...(c.p.connectGuard ? { binary: c.p.connectGuard } : {}),
    ...(c.p.loadTimeoutMs ? { loadTimeoutMs: c.p.loadTimeoutMs } : {}),
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

export function startSyscallGuard(
  c: LoadContext,
  policy: TracingPolicy,
  what: string,
  probes: TracingPolicy["probes"],
  netns: number[] | "node",
  r: Running,
  deliver: (e: RuntimePolicyEvent) => void,
  lostKernel: (n: number) => void,
): Promise<SyscallGuard | undefined> {
  const cacheDir = c.p.btfCacheDir;
  return SyscallGuard.start({
    policy,
    probes,
    scope: netns,
    guards: c.guards,
    btf: (compute) => withBtf(compute, cacheDir === undefined ? {} : { cacheDir }),
    what,
    ...(c.p.syscallGuardBinary ? { binary: c.p.syscallGuardBinary } : {}),
    ...(c.p.loadTimeoutMs ? { loadTimeoutMs: c.p.loadTimeoutMs } : {}),
    onEvent: deliver,
    onLost: lostKernel,
    onExit: (why) => {
      r.state = "error";
      r.error = `${what}: ${why}`;
      r.sys = undefined;
    },
  });
}

export function startBpftrace(
  c: LoadContext,
  policy: TracingPolicy,
  what: string,
  netns: number[] | "node",
  r: Running,
  deliver: (e: RuntimePolicyEvent) => void,
  lostKernel: (n: number) => void,
): Promise<BpftraceProcess> {
  // The syscall guard's own selectors: bpftrace has no process masks (a fallback must not drop them).
  const guardOnly = policy.probes.flatMap((p) =>
    p.selectors.filter((s) => s.matchParentBinaries.length > 0 || s.matchPIDs.some((x) => x.followForks)),
  );
  if (guardOnly[0] !== undefined)
    throw new MembraneError(
      "RUNTIME_ENFORCER_FAILED",
      `Cannot load ${what}: ${guardOnly[0].path} uses matchParentBinaries or followForks, which only the syscall guard serves${r.fallback ? `, and it could not load: ${r.fallback}` : ""}`,
      { hint: "build dist/bin/membrane-syscall-guard (npm run build), or remove those selectors" },
    );
  const compiled = compileScript(policy, { netns }, c.guards);
  r.rules = compiled.rules;
  return BpftraceProcess.start({
    script: compiled.text,
    expectProbes: compiled.probes,
    uprobes: compiled.uprobes,
    what,
    ...(c.p.bpftrace ? { bpftrace: c.p.bpftrace } : {}),
    ...(c.p.loadTimeoutMs ? { loadTimeoutMs: c.p.loadTimeoutMs } : {}),
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
