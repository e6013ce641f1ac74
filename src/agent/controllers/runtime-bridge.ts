/**
 * TracingPolicy events into the runtime export: the tracing-policies
 * controller's RuntimeEventSink (src/runtime/enforce/events.ts) feeding the
 * runtime controller's RuntimeSink (src/runtime/events.ts), so that a kill
 * is one more Tetragon JSON line (process_kprobe / process_tracepoint / process_uprobe with
 * policy_name and action) beside the exec and exit events, counted in
 * tetragon_policy_events_total. The process comes from the runtime's process
 * cache (its exec_id, pod and parent); a process the cache does not know
 * (the runtime source is off, or it started and was killed between two
 * reads) is described from the event alone, with no exec_id, and the pod of
 * its network namespace.
 */
import type { RuntimePolicyEvent, RuntimeEventSink } from "../../runtime/enforce/events.js";
import type {
  RuntimeEvent,
  RuntimeSink,
  TetragonArgument,
  TetragonPod,
  TetragonProcess,
} from "../../runtime/events.js";
import { RuntimeController, type RuntimeControllerDeps, type RuntimeParams } from "./runtime.js";

function argOf(a: RuntimePolicyEvent["args"][number]): TetragonArgument {
  const label = a.label !== undefined ? { label: a.label } : {};
  if (a.sock) return { ...label, sock_arg: { ...a.sock } };
  if (a.sockaddr) return { ...label, sockaddr_arg: { ...a.sockaddr } };
  if (a.value === undefined) return { ...label, string_arg: "" };
  // A file the kernel named (the fanotify responder's Override events, and file hooks' paths): Tetragon's file_arg/path_arg.
  if (a.type === "file") return { ...label, file_arg: { path: a.value } };
  if (a.type === "path") return { ...label, path_arg: { path: a.value } };
  if (/^-?\d+$/.test(a.value) && a.type !== "string" && a.type !== "char_buf") {
    return { ...label, int_arg: Number(a.value) };
  }
  return { ...label, string_arg: a.value };
}

function fallbackProcess(e: RuntimePolicyEvent, pod: TetragonPod | undefined): TetragonProcess {
  return {
    ...(pod ? { pod } : {}),
    exec_id: "",
    pid: e.pid,
    uid: e.uid,
    cwd: "",
    binary: e.comm,
    arguments: "",
    flags: "",
    start_time: e.time.toISOString(),
    auid: 4294967295,
    tid: e.tid,
  };
}

/** The event as Tetragon exports it. */
export function policyEventToRuntime(
  e: RuntimePolicyEvent,
  sink: RuntimeSink,
  nodeName: string,
): RuntimeEvent {
  const known = sink.processOf(e.pid);
  const process = known?.process ?? fallbackProcess(e, sink.podOf?.(e.netnsInode));
  const parent = known?.parent ? { parent: known.parent } : {};
  const common = {
    process,
    ...parent,
    args: e.args.map(argOf),
    action: e.action,
    policy_name: e.policyName,
    ...(e.message !== undefined ? { message: e.message } : {}),
    ...(e.tags.length > 0 ? { tags: [...e.tags] } : {}),
  };
  const time = e.time.toISOString();
  if (e.type === "process_tracepoint") {
    const [subsys = "", event = ""] = e.functionName.split(":");
    return { process_tracepoint: { ...common, subsys, event }, node_name: nodeName, time };
  }
  if (e.type === "process_uprobe") {
    const { path = "", symbol = e.functionName } = e.uprobe ?? {};
    return { process_uprobe: { ...common, path, symbol }, node_name: nodeName, time };
  }
  return { process_kprobe: { ...common, function_name: e.functionName }, node_name: nodeName, time };
}

/** The sink the tracing-policies controller reports into when runtime events are on. */
export function runtimeBridge(sink: RuntimeSink, nodeName: string): RuntimeEventSink {
  return {
    onPolicyEvent: (e) => sink.push(policyEventToRuntime(e, sink, nodeName)),
    onLost: (_policy, lost) => sink.policyLost?.(lost),
  };
}

/**
 * Starts the runtime controller (`membrane agent --runtime-events`) and routes
 * the TracingPolicy events into it; undefined when runtime events are off
 * (TracingPolicy events then stay in the tracing controller's recent list).
 */
export async function startRuntime(
  params: RuntimeParams | undefined,
  d: Omit<RuntimeControllerDeps, "registry"> & {
    readonly registry: RuntimeControllerDeps["registry"] | undefined;
  },
  tracing: { setSink(s: RuntimeEventSink | undefined): void },
): Promise<RuntimeController | undefined> {
  if (!params) return undefined;
  const { registry, ...rest } = d;
  const runtime = new RuntimeController(params, registry ? { ...rest, registry } : rest);
  await runtime.start();
  tracing.setSink(runtimeBridge(runtime, params.nodeName));
  return runtime;
}
