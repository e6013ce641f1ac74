/**
 * Saved flows, read back offline (`membrane observe --input FILE`).
 *
 *   JSON lines (ours, an export, or `hubble observe -o json`) --parseFlowLines--> FlowRecord[]
 *   FlowRecord[] + ObserveRequest --selectRecords--> what the agent would have answered
 *
 * A line may be a record (`{"flow": ...}` / `{"lost_events": ...}`) or a bare
 * flow object; blank lines are skipped. A malformed line is an error naming
 * the file and line.
 */
import { MembraneError } from "../errors.js";
import type { Flow, FlowRecord } from "./flow.js";
import { compileFilter } from "./filter.js";
import type { ObserveRequest } from "./flags.js";
import { FlowRing } from "./ring.js";

function bad(file: string, line: number, why: string): MembraneError {
  return new MembraneError("FLOW_FILTER_INVALID", `Cannot read flows from ${file} line ${line}: ${why}`, {
    location: { file, line },
    hint: "The input must be JSON lines as written by `membrane observe -o json` or the flow exporter.",
  });
}

export function parseFlowLines(text: string, file: string): FlowRecord[] {
  const out: FlowRecord[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw bad(file, i + 1, `not JSON (${(e as Error).message})`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(file, i + 1, "not a JSON object");
    const o = v as Record<string, unknown>;
    if ("flow" in o || "lost_events" in o) {
      if (typeof o.time !== "string") {
        const t = (o.flow as { time?: unknown } | undefined)?.time;
        if (typeof t !== "string") throw bad(file, i + 1, 'the record has no "time"');
        o.time = t;
      }
      out.push(o as unknown as FlowRecord);
    } else if (
      typeof o.time === "string" &&
      typeof o.verdict === "string" &&
      typeof o.event_type === "object"
    ) {
      const f = o as unknown as Flow;
      out.push(
        f.node_name === undefined
          ? { flow: f, time: f.time }
          : { flow: f, node_name: f.node_name, time: f.time },
      );
    } else throw bad(file, i + 1, 'neither a record ({"flow": ...}) nor a flow (time, verdict, event_type)');
  });
  return out;
}

/** Applies a request's filter, time window and --last N to saved records. */
export function selectRecords(records: readonly FlowRecord[], req: ObserveRequest): FlowRecord[] {
  const ring = new FlowRing({ capacity: Math.max(1, records.length) });
  for (const r of records) {
    ring.pushRecord(r, Date.parse(r.time));
  }
  return ring.read({
    filter: compileFilter(req.filter),
    ...(req.number === undefined ? {} : { number: req.number }),
    ...(req.since === undefined ? {} : { since: req.since }),
    ...(req.until === undefined ? {} : { until: req.until }),
  });
}
