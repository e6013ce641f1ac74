/**
 * Runtime events for people (one line each, like `tetra getevents -o compact`)
 * and for programs (Tetragon's JSON, one event per line).
 */
import { escapeControls } from "../errors.js";
import { eventProcess, eventType, type RuntimeEvent } from "./events.js";

const ICON: Record<string, string> = {
  process_exec: "🚀 process",
  process_exit: "💥 exit   ",
  process_kprobe: "🔧 kprobe ",
  process_tracepoint: "🔧 tp     ",
  process_uprobe: "🔧 uprobe ",
};

export function formatRuntimeJson(e: RuntimeEvent): string {
  return JSON.stringify(e);
}

/** `time  kind  where  binary args  (details)`, control characters escaped. */
export function formatRuntimeCompact(e: RuntimeEvent): string {
  const t = eventType(e);
  const p = eventProcess(e);
  const where = p.pod ? `${p.pod.namespace}/${p.pod.name}` : "host";
  let detail = "";
  if ("process_exit" in e) {
    const x = e.process_exit;
    detail = x.signal ? ` ${x.signal}` : ` ${x.status ?? 0}`;
  } else if ("process_kprobe" in e) {
    detail = ` ${e.process_kprobe.function_name} ${e.process_kprobe.policy_name ?? ""} ${e.process_kprobe.action ?? ""}`;
  } else if ("process_tracepoint" in e) {
    const b = e.process_tracepoint;
    detail = ` ${b.subsys}:${b.event} ${b.policy_name ?? ""} ${b.action ?? ""}`;
  } else if ("process_uprobe" in e) {
    detail = ` ${e.process_uprobe.symbol} ${e.process_uprobe.policy_name ?? ""}`;
  }
  const line = `${e.time} ${ICON[t] ?? t} ${where} ${p.binary} ${p.arguments}${detail}`;
  return escapeControls(line.trimEnd());
}
