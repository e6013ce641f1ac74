/**
 * The runtime event ring: the last `capacity` events, overwritten oldest
 * first (counted), with the filters `membrane runtime events` offers:
 * event types, endpoint (`namespace/name`, or `host`), binary (substring),
 * policy name, action; and follow (new events as they come).
 */
import { MembraneError } from "../errors.js";
import {
  eventProcess,
  eventType,
  RUNTIME_EVENT_TYPES,
  type RuntimeEvent,
  type RuntimeEventType,
} from "./events.js";

export interface RuntimeFilter {
  readonly types?: readonly RuntimeEventType[];
  /** `namespace/name` of endpoints, or `host` for the node's own processes. */
  readonly endpoints?: readonly string[];
  /** Substrings of the binary. */
  readonly binaries?: readonly string[];
  readonly policies?: readonly string[];
  readonly actions?: readonly string[];
}

export interface RuntimeQuery {
  readonly filter?: RuntimeFilter;
  /** The last N matching events (default: all in the ring). */
  readonly number?: number;
}

/** Checks a filter from the API (untrusted) field by field. */
export function checkFilter(v: unknown, where = "filter"): RuntimeFilter {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new MembraneError(
      "API_REQUEST_INVALID",
      `Cannot read the runtime events request: ${where} must be an object`,
    );
  const out: Record<string, string[]> = {};
  for (const [k, val] of Object.entries(v)) {
    if (!["types", "endpoints", "binaries", "policies", "actions"].includes(k))
      throw new MembraneError(
        "API_REQUEST_INVALID",
        `Cannot read the runtime events request: ${where}.${k} is not a filter field`,
      );
    if (!Array.isArray(val) || val.length > 64 || !val.every((s) => typeof s === "string" && s.length <= 256))
      throw new MembraneError(
        "API_REQUEST_INVALID",
        `Cannot read the runtime events request: ${where}.${k} must be a list of at most 64 strings`,
      );
    if (k === "types")
      for (const t of val as string[])
        if (!(RUNTIME_EVENT_TYPES as readonly string[]).includes(t))
          throw new MembraneError(
            "API_REQUEST_INVALID",
            `Cannot read the runtime events request: ${where}.types: unknown type ${JSON.stringify(t)} (one of ${RUNTIME_EVENT_TYPES.join(", ")})`,
          );
    out[k] = val as string[];
  }
  return out as RuntimeFilter;
}

function body(e: RuntimeEvent): { policy_name?: string; action?: string } {
  return (e as unknown as Record<string, { policy_name?: string; action?: string }>)[eventType(e)] ?? {};
}

export function matches(f: RuntimeFilter, e: RuntimeEvent): boolean {
  if (f.types?.length && !f.types.includes(eventType(e))) return false;
  const p = eventProcess(e);
  if (f.endpoints?.length) {
    const where = p.pod ? `${p.pod.namespace}/${p.pod.name}` : "host";
    if (!f.endpoints.includes(where)) return false;
  }
  if (f.binaries?.length && !f.binaries.some((b) => p.binary.includes(b))) return false;
  const b = body(e);
  if (f.policies?.length && !f.policies.includes(b.policy_name ?? "")) return false;
  if (f.actions?.length && !f.actions.some((a) => (b.action ?? "").endsWith(a.toUpperCase()))) return false;
  return true;
}

export class RuntimeRing {
  private readonly buf: RuntimeEvent[] = [];
  private start = 0;
  written = 0;
  overwritten = 0;
  private readonly listeners = new Set<(e: RuntimeEvent) => void>();

  constructor(readonly capacity: number) {}

  push(e: RuntimeEvent): void {
    this.written++;
    if (this.buf.length < this.capacity) this.buf.push(e);
    else {
      this.buf[this.start] = e;
      this.start = (this.start + 1) % this.capacity;
      this.overwritten++;
    }
    for (const l of this.listeners) l(e);
  }

  read(q: RuntimeQuery): RuntimeEvent[] {
    const f = q.filter ?? {};
    const all = [...this.buf.slice(this.start), ...this.buf.slice(0, this.start)].filter((e) =>
      matches(f, e),
    );
    return q.number !== undefined ? all.slice(Math.max(0, all.length - q.number)) : all;
  }

  /** New matching events until `signal` aborts; a slow reader loses the oldest beyond 10,000 (counted). */
  async *follow(q: RuntimeQuery, signal: AbortSignal): AsyncGenerator<RuntimeEvent> {
    const f = q.filter ?? {};
    const queue: RuntimeEvent[] = [];
    let wake: (() => void) | undefined;
    const l = (e: RuntimeEvent): void => {
      if (!matches(f, e)) return;
      if (queue.length >= 10_000) queue.shift();
      queue.push(e);
      wake?.();
    };
    this.listeners.add(l);
    const onAbort = (): void => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      for (const e of this.read(q)) yield e;
      while (!signal.aborted) {
        const e = queue.shift();
        if (e) yield e;
        else await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      this.listeners.delete(l);
      signal.removeEventListener("abort", onAbort);
    }
  }
}
