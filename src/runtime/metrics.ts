/**
 * Runtime metrics in Tetragon's names, on the agent's prom-client registry:
 *   tetragon_events_total{type, namespace, workload, pod, binary}
 *   tetragon_policy_events_total{policy, hook, namespace, workload, pod, binary}
 *   tetragon_bpf_missed_events_total{msg_op, error}    events the kernel or the bounds dropped
 *                                                      (msg_op "process": the event source; "kprobe": TracingPolicy events)
 *   tetragon_errors_total{type}                        lines of the source that could not be read
 *   tetragon_event_cache_accesses_total                policy events held until their process was known
 *   tetragon_event_cache_process_info_errors_total{event_type}
 *                                                      held events that went out without it (no exec_id)
 */
import { Counter, Registry } from "prom-client";
import { eventProcess, eventType, eventTypeLabel, type RuntimeEvent } from "./events.js";

type EventLabel = "type" | "namespace" | "workload" | "pod" | "binary";
type PolicyLabel = "policy" | "hook" | "namespace" | "workload" | "pod" | "binary";

/**
 * Counts by label values, added to their counter when it is read (its collect): a Map lookup per
 * event instead of prom-client's label check and hash (bench/runtime-rate.ts: an eighth of the
 * pipeline's CPU at 50,000 events/s). Bounded like the counter itself: one entry per label set.
 */
class Tally<L extends string> {
  private readonly pending = new Map<string, { labels: Record<L, string>; n: number }>();

  add(key: string, labels: () => Record<L, string>): void {
    const t = this.pending.get(key);
    if (t) t.n++;
    else this.pending.set(key, { labels: labels(), n: 1 });
  }

  drain(c: Counter<L>): void {
    for (const { labels, n } of this.pending.values()) c.inc(labels, n);
    this.pending.clear();
  }
}

export class RuntimeMetrics {
  readonly registry: Registry;
  private readonly events: Counter<EventLabel>;
  private readonly policyEvents: Counter<PolicyLabel>;
  private readonly eventsTally = new Tally<EventLabel>();
  private readonly policyTally = new Tally<PolicyLabel>();
  private readonly missed: Counter<"msg_op" | "error">;
  private readonly errors: Counter<"type">;
  private readonly cacheAccesses: Counter;
  private readonly processInfoErrors: Counter<"event_type">;

  constructor(registry?: Registry) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    this.events = new Counter({
      name: "tetragon_events_total",
      help: "The total number of Tetragon events",
      labelNames: ["type", "namespace", "workload", "pod", "binary"],
      registers,
      collect: () => this.eventsTally.drain(this.events),
    });
    this.policyEvents = new Counter({
      name: "tetragon_policy_events_total",
      help: "Policy events calls observed.",
      labelNames: ["policy", "hook", "namespace", "workload", "pod", "binary"],
      registers,
      collect: () => this.policyTally.drain(this.policyEvents),
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
    this.cacheAccesses = new Counter({
      name: "tetragon_event_cache_accesses_total",
      help: "Policy events held until the process cache knew their process.",
      registers,
    });
    this.processInfoErrors = new Counter({
      name: "tetragon_event_cache_process_info_errors_total",
      help: "Held policy events that went out without their process (no exec_id), by event type.",
      labelNames: ["event_type"],
      registers,
    });
  }

  /** A policy event held in the event cache (its process not known yet). */
  eventCacheAccess(): void {
    this.cacheAccesses.inc();
  }

  /** A held event went out without its process (no exec_id): its type, as PROCESS_KPROBE. */
  processInfoMissing(type: string): void {
    this.processInfoErrors.inc({ event_type: type.toUpperCase() });
  }

  observe(e: RuntimeEvent): void {
    const p = eventProcess(e);
    const t = eventType(e);
    const namespace = p.pod?.namespace ?? "";
    const workload = p.pod?.workload ?? "";
    const pod = p.pod?.name ?? "";
    const where = `${namespace}\0${workload}\0${pod}\0${p.binary}`;
    const type = eventTypeLabel(t);
    this.eventsTally.add(`${type}\0${where}`, () => ({ type, namespace, workload, pod, binary: p.binary }));
    const b = (
      e as unknown as Record<string, { policy_name?: string; function_name?: string; event?: string }>
    )[t];
    const policy = b?.policy_name;
    if (policy) {
      const hook = b.function_name ?? b.event ?? t;
      this.policyTally.add(`${policy}\0${hook}\0${where}`, () => ({
        policy,
        hook,
        namespace,
        workload,
        pod,
        binary: p.binary,
      }));
    }
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
