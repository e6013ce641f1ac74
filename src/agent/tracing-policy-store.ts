/**
 * TracingPolicies in the store, so that they survive an agent restart: one
 * record per policy under `tracingpolicies/<kind>/<namespace or ->/<name>`,
 * holding the text of the file it was applied from (TracingPolicy files are
 * few and small; the text is parsed again at start, so a record is validated
 * by the same code that validated the apply).
 *
 *   apply:  parse whole file --enforce every policy--> put one record per policy (all or none)
 *   delete: delete the records --> detach
 *   start:  tracingpolicies/* --readTracingPolicies--> TracingPolicy[] (each distinct file parsed once)
 */
import type { Logger } from "pino";
import { parseTracingPolicies } from "../runtime/policy/parse.js";
import { policyKey, type TracingPolicy } from "../runtime/policy/types.js";

export const TRACING_PREFIX = "tracingpolicies/";

export interface TracingPolicyRecordV1 {
  readonly v: 1;
  /** Where it was applied from, for messages. */
  readonly file: string;
  /** The whole file it was applied from (its other policies are stored under their own keys). */
  readonly text: string;
}

/** Store key of a policy. */
export function tracingKey(p: Pick<TracingPolicy, "kind" | "namespace" | "name">): string {
  return TRACING_PREFIX + policyKey(p);
}

export function encodeTracingRecord(text: string, file: string): string {
  const rec: TracingPolicyRecordV1 = { v: 1, file, text };
  return JSON.stringify(rec);
}

/**
 * The stored policies, each parsed again from its record. A record that no
 * longer parses, or whose file no longer holds the policy its key names, is
 * logged and skipped (never half-applied).
 */
export function readTracingPolicies(
  kvs: readonly { key: string; value: string }[],
  logger: Logger,
): { key: string; policy: TracingPolicy; text: string; file: string }[] {
  const out: { key: string; policy: TracingPolicy; text: string; file: string }[] = [];
  const parsed = new Map<string, Map<string, TracingPolicy> | Error>();
  for (const kv of kvs) {
    try {
      const rec = JSON.parse(kv.value) as Partial<TracingPolicyRecordV1>;
      if (rec.v !== 1 || typeof rec.text !== "string" || typeof rec.file !== "string")
        throw new Error("unknown record");
      const cacheKey = `${rec.file}\0${rec.text}`;
      let byKey = parsed.get(cacheKey);
      if (!byKey) {
        try {
          byKey = new Map(parseTracingPolicies(rec.text, rec.file).map((p) => [tracingKey(p), p]));
        } catch (e) {
          byKey = e instanceof Error ? e : new Error(String(e));
        }
        parsed.set(cacheKey, byKey);
      }
      if (byKey instanceof Error) throw byKey;
      const policy = byKey.get(kv.key);
      if (!policy) throw new Error("the stored file no longer holds this policy");
      out.push({ key: kv.key, policy, text: rec.text, file: rec.file });
    } catch (e) {
      logger.error({ key: kv.key, err: String(e) }, "stored TracingPolicy cannot be read; skipped");
    }
  }
  return out;
}
