/**
 * bpftrace's `-f json` output, one JSON object a line, turned into what the
 * enforcer needs: READY, an event line (`E\t...` from script.ts), lost
 * events. Strings from the kernel (comm, paths) arrive `%r`-escaped: every
 * non-printable byte as `\xNN`, so a hostile process name cannot forge a
 * field or a line; trailing NUL padding is removed.
 */
import { jsonObjectLine } from "../json-line.js";
import type { PolicyEventArg, PolicyEventType, RuntimePolicyEvent } from "./events.js";
import type { TracingProbe } from "../policy/types.js";
import type { CompiledRule } from "./script.js";

export type OutputLine =
  | { readonly kind: "ready" }
  | { readonly kind: "event"; readonly fields: readonly string[] }
  | { readonly kind: "lost"; readonly count: number }
  /** bpftrace's count of the probes it attached (printed before BEGIN runs). */
  | { readonly kind: "attached"; readonly count: number }
  | { readonly kind: "other" };

/** Longest line read (bpftrace's own lines are far shorter); longer ones are ignored. */
export const MAX_LINE = 16 * 1024;

export function parseLine(line: string): OutputLine {
  const o = jsonObjectLine(line, MAX_LINE);
  if (typeof o === "string") return { kind: "other" };
  const { type, data } = o;
  if (type === "lost_events") {
    const n = (data as { events?: unknown } | null)?.events;
    return { kind: "lost", count: typeof n === "number" && Number.isFinite(n) ? n : 0 };
  }
  if (type === "attached_probes") {
    const n = (data as { probes?: unknown } | null)?.probes;
    return typeof n === "number" && Number.isInteger(n) ? { kind: "attached", count: n } : { kind: "other" };
  }
  if (type !== "printf" || typeof data !== "string") return { kind: "other" };
  if (data === "READY\n") return { kind: "ready" };
  if (!data.startsWith("E\t")) return { kind: "other" };
  return { kind: "event", fields: data.replace(/\n$/, "").split("\t").slice(1) };
}

/** `%r` text without the NUL padding of a fixed-size buffer. */
export function unpad(s: string): string {
  const i = s.indexOf("\\x00");
  return i < 0 ? s : s.slice(0, i);
}

const EVENT_TYPE: Record<TracingProbe["hook"], PolicyEventType> = {
  kprobe: "process_kprobe",
  tracepoint: "process_tracepoint",
  uprobe: "process_uprobe",
};

export interface EventContext {
  readonly policyName: string;
  readonly policyNamespace: string | undefined;
  readonly rules: readonly CompiledRule[];
  readonly now: Date;
}

/** The event of one `E` line, or undefined when the line does not fit the rule it names. */
export function toEvent(fields: readonly string[], c: EventContext): RuntimePolicyEvent | undefined {
  const rule = c.rules[Number(fields[0])];
  if (!rule) return undefined;
  const nInts = rule.intArgs.length;
  const expect = 8 + nInts + 1 + (rule.strArg === undefined ? 0 : 1);
  if (fields.length !== expect) return undefined;
  const num = (i: number): number => Number(fields[i]);
  const killed = fields[7] === "1";
  const ints = new Map<number, string>(rule.intArgs.map((idx, j) => [idx, fields[8 + j] ?? ""]));
  const comm = unpad(fields[8 + nInts] ?? "");
  const str = rule.strArg === undefined ? undefined : unpad(fields[9 + nInts] ?? "");
  const args: PolicyEventArg[] = rule.probe.args.map((a) => ({
    index: a.index,
    type: a.type,
    label: a.label,
    value: a.index === rule.strArg ? str : ints.get(a.index),
  }));
  return {
    type: EVENT_TYPE[rule.probe.hook],
    ...(rule.attach.uprobe ? { uprobe: { ...rule.attach.uprobe } } : {}),
    policyName: c.policyName,
    policyNamespace: c.policyNamespace,
    functionName: rule.probe.functionName,
    // An exempt process (PID 1, the agent) was matched but not signalled: reported as a Post.
    action: killed ? rule.action : "KPROBE_ACTION_POST",
    signal: killed ? rule.signal : undefined,
    pid: num(1),
    tid: num(2),
    uid: num(3),
    netnsInode: num(4),
    cgroupId: fields[5] ?? "0",
    ktimeNs: /^\d+$/.test(fields[6] ?? "") ? BigInt(fields[6] ?? "0") : 0n,
    comm,
    args,
    message: rule.probe.message,
    tags: rule.probe.tags,
    time: c.now,
  };
}
