/**
 * A TracingPolicy event as Tetragon exports it (process_kprobe /
 * process_tracepoint / process_uprobe with policy_name and action), its
 * process taken from the runtime's process cache (exec_id, pod, parent) as it
 * was at the event's time. A process the cache does not know (the runtime
 * source is off, or its records were never read: ./event-cache.ts holds the
 * event a while first) is described from the event alone, with no exec_id,
 * and the pod of its network namespace.
 */
import type { RuntimePolicyEvent } from "./enforce/events.js";
import type { RuntimeEvent, RuntimeSink, TetragonArgument, TetragonPod, TetragonProcess } from "./events.js";

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
  const known = sink.processOf(e.pid, e.ktimeNs);
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
