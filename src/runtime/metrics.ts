/**
 * Runtime metrics in Tetragon's names, on the agent's prom-client registry:
 *   tetragon_events_total{type, namespace, workload, pod, binary}
 *   tetragon_policy_events_total{policy, hook, namespace, workload, pod, binary}
 *   tetragon_bpf_missed_events_total{msg_op, error}    events the kernel or the bounds dropped
 *                                                      (msg_op "process": the event source; "kprobe": TracingPolicy events)
 *   tetragon_errors_total{type}                        lines of the source that could not be read
 */
import { Counter, Registry } from "prom-client";
import { eventProcess, eventType, eventTypeLabel, type RuntimeEvent } from "./events.js";

export class RuntimeMetrics {
  readonly registry: Registry;
  private readonly events: Counter<"type" | "namespace" | "workload" | "pod" | "binary">;
  private readonly policyEvents: Counter<"policy" | "hook" | "namespace" | "workload" | "pod" | "binary">;
  private readonly missed: Counter<"msg_op" | "error">;
  private readonly errors: Counter<"type">;

  constructor(registry?: Registry) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    this.events = new Counter({
      name: "tetragon_events_total",
      help: "The total number of Tetragon events",
      labelNames: ["type", "namespace", "workload", "pod", "binary"],
      registers,
    });
    this.policyEvents = new Counter({
      name: "tetragon_policy_events_total",
      help: "Policy events calls observed.",
      labelNames: ["policy", "hook", "namespace", "workload", "pod", "binary"],
      registers,
    });
    this.missed = new Counter({
      name: "tetragon_bpf_missed_events_total",
      help: "Number of Tetragon perf events that are failed to be sent from the kernel.",
      labelNames: ["msg_op", "error"],
      registers,
    });
    this.errors = new Counter({
      name: "tetragon_errors_total",
      help: "The total number of Tetragon errors. For internal use only.",
      labelNames: ["type"],
      registers,
    });
  }

  observe(e: RuntimeEvent): void {
    const p = eventProcess(e);
    const t = eventType(e);
    const where = {
      namespace: p.pod?.namespace ?? "",
      workload: p.pod?.workload ?? "",
      pod: p.pod?.name ?? "",
      binary: p.binary,
    };
    this.events.inc({ type: eventTypeLabel(t), ...where });
    const b = (
      e as unknown as Record<string, { policy_name?: string; function_name?: string; event?: string }>
    )[t];
    if (b?.policy_name)
      this.policyEvents.inc({ policy: b.policy_name, hook: b.function_name ?? b.event ?? t, ...where });
  }

  /** TracingPolicy events lost: the loader's ring buffer was full (kernel), or over the agent's budget. */
  policyLost(lost: { readonly kernel: number; readonly agent: number }): void {
    if (lost.kernel > 0) this.missed.inc({ msg_op: "kprobe", error: "overflow" }, lost.kernel);
    if (lost.agent > 0) this.missed.inc({ msg_op: "kprobe", error: "rate_limit" }, lost.agent);
  }

  /** Dropped before becoming events: lost in the kernel, rate-limited, or unreadable. */
  drop(reason: "lost" | "malformed" | "orphan" | "rate_limit", n: number): void {
    if (reason === "malformed" || reason === "orphan") this.errors.inc({ type: `event_${reason}` }, n);
    else this.missed.inc({ msg_op: "process", error: reason === "lost" ? "overflow" : "rate_limit" }, n);
  }
}
