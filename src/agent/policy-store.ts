/**
 * Policies in the store: one record per policy, holding that policy only, in
 * the normalised form the core computes on. A restart decodes each record
 * once (no YAML), so its cost grows with the number of policies, not with
 * the number of policies times the size of the file they came from.
 *
 *   apply:  PolicyResource --encodePolicy--> {body, value}      value = PolicyRecordV2 as JSON
 *   start:  policies/<kind>/<namespace>/<name> --readPolicies--> PolicyResource[]
 *           (V1 records {text, file}: each distinct file parsed once, rewritten as V2)
 *
 * `body` is the canonical JSON of the policy without where it was read from:
 * two applies of the same policy give the same body, so "unchanged" is a
 * string comparison.
 */
import type { Logger } from "pino";
import { Selector, type Requirement } from "../labels/selector.js";
import { parsePolicies } from "../policy/api/index.js";
import type { PolicyRef, PolicyResource } from "../policy/types.js";
import type { TxnOp } from "../store/store.js";
import { KEYS, type PolicyRecordV1, type PolicyRecordV2 } from "./records.js";

/** Store key suffix of a policy: `<kind>/<namespace or ->/<name>`. */
export function policyKey(r: PolicyRef): string {
  return `${r.kind}/${r.namespace ?? "-"}/${r.name}`;
}

/** JSON-safe form of the normalised policy: bigints and selectors tagged, anything else refused. */
function encodeValue(v: unknown, path: string): unknown {
  if (typeof v === "bigint") return { $bigint: v.toString() };
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Selector) return { $selector: v.requirements };
  if (Array.isArray(v)) return v.map((x, i) => encodeValue(x, `${path}[${i}]`));
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    // A new class in the policy model needs a tag here; failing loudly beats storing `{}`.
    throw new Error(`Cannot store policy field ${path}: ${String((proto as object).constructor?.name)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith("$")) throw new Error(`Cannot store policy field ${path}.${k}: reserved name`);
    if (x !== undefined) out[k] = encodeValue(x, `${path}.${k}`);
  }
  return out;
}

function decodeValue(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(decodeValue);
  const o = v as Record<string, unknown>;
  if (typeof o["$bigint"] === "string") return BigInt(o["$bigint"]);
  if (Array.isArray(o["$selector"])) return new Selector(o["$selector"] as Requirement[]);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = decodeValue(x);
  return out;
}

export interface EncodedPolicy {
  /** Canonical JSON of the policy, without its source (for "unchanged"). */
  readonly body: string;
  /** The store value: a PolicyRecordV2. */
  readonly value: string;
}

export function encodePolicy(res: PolicyResource): EncodedPolicy {
  const { source, ...policy } = res;
  const body = JSON.stringify(encodeValue(policy, "policy"));
  const head = source ? `"source":${JSON.stringify({ file: source.file, line: source.line })},` : "";
  return { body, value: `{"v":2,${head}"policy":${body}}` };
}

/** A V2 record's policy; undefined when the record is not a V2 policy record. */
export function decodePolicy(value: string): { res: PolicyResource; body: string } | undefined {
  const rec = JSON.parse(value) as Partial<PolicyRecordV2>;
  if (rec.v !== 2 || typeof rec.policy !== "object" || rec.policy === null) return undefined;
  const policy = decodeValue(rec.policy) as Omit<PolicyResource, "source">;
  if (typeof policy.ref?.name !== "string" || !Array.isArray(policy.rules)) return undefined;
  const res: PolicyResource = rec.source ? { ...policy, source: rec.source } : policy;
  return { res, body: JSON.stringify(rec.policy) };
}

export interface LoadedPolicies {
  readonly policies: { key: string; res: PolicyResource; body: string }[];
  /** Puts that rewrite V1 records as V2 (the caller writes them). */
  readonly migrate: TxnOp[];
}

/**
 * Reads the stored policy records. V1 records (a copy of the whole file per
 * policy) are parsed once per distinct file and returned for rewriting.
 * Records that no longer decode or parse are logged and skipped.
 */
export function readPolicies(
  kvs: readonly { key: string; value: string }[],
  opts: { meshAuth: boolean; logger: Logger },
): LoadedPolicies {
  const policies: LoadedPolicies["policies"] = [];
  const migrate: TxnOp[] = [];
  const parsedFiles = new Map<string, Map<string, PolicyResource> | Error>();
  for (const kv of kvs) {
    const key = kv.key.slice(KEYS.policies.length);
    try {
      const v2 = decodePolicy(kv.value);
      if (v2) {
        if (policyKey(v2.res.ref) !== key) throw new Error(`the record names ${policyKey(v2.res.ref)}`);
        policies.push({ key, ...v2 });
        continue;
      }
      const v1 = JSON.parse(kv.value) as Partial<PolicyRecordV1>;
      if (typeof v1.text !== "string" || typeof v1.file !== "string") throw new Error("unknown record");
      const cacheKey = `${v1.file}\0${v1.text}`;
      let byKey = parsedFiles.get(cacheKey);
      if (!byKey) {
        try {
          const all = parsePolicies(v1.text, v1.file, { meshAuth: opts.meshAuth });
          byKey = new Map(all.map((r) => [policyKey(r.ref), r]));
        } catch (e) {
          byKey = e instanceof Error ? e : new Error(String(e));
        }
        parsedFiles.set(cacheKey, byKey);
      }
      if (byKey instanceof Error) throw byKey;
      const res = byKey.get(key);
      if (!res) throw new Error("the stored file no longer holds this policy");
      const enc = encodePolicy(res);
      policies.push({ key, res, body: enc.body });
      migrate.push({ type: "put", key: kv.key, value: enc.value });
    } catch (e) {
      opts.logger.error({ key: kv.key, err: String(e) }, "stored policy cannot be read; skipped");
    }
  }
  return { policies, migrate };
}
