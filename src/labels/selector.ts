/**
 * Label selectors: Kubernetes `matchLabels` + `matchExpressions`, with
 * Cilium's source prefixes on keys (`k8s:app`, `reserved:host`, `any:app`).
 *
 *   {matchLabels, matchExpressions}  --Selector.fromLabelSelector-->  Selector
 *   Selector.matches(LabelSet) -> boolean      (requirements are ANDed)
 *
 * A key without a source prefix means `any:` (a label with that key from any
 * source). `NotIn` and `DoesNotExist` match when the key is absent, as in
 * Kubernetes. The empty selector matches every label set.
 */
import { MembraneError } from "../errors.js";
import type { LabelSet } from "./label.js";
import { splitSourceKey } from "./label.js";

export type Operator = "In" | "NotIn" | "Exists" | "DoesNotExist";
export const OPERATORS: readonly Operator[] = ["In", "NotIn", "Exists", "DoesNotExist"];

export interface Requirement {
  /** Label source; `any` matches a label of any source. */
  readonly source: string;
  readonly key: string;
  readonly operator: Operator;
  /** Sorted; empty for Exists / DoesNotExist. */
  readonly values: readonly string[];
}

/** The user's shape, as in YAML. */
export interface LabelSelectorSpec {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export class Selector {
  readonly requirements: readonly Requirement[];
  private readonly str: string;

  constructor(requirements: readonly Requirement[]) {
    const seen = new Map<string, Requirement>();
    for (const r of requirements) {
      const values = [...new Set(r.values)].sort();
      const norm: Requirement = { source: r.source, key: r.key, operator: r.operator, values };
      seen.set(requirementString(norm), norm);
    }
    this.requirements = [...seen.values()].sort((a, b) =>
      requirementString(a) < requirementString(b) ? -1 : 1,
    );
    this.str = this.requirements.length === 0 ? "{}" : this.requirements.map(requirementString).join(",");
  }

  /** Matches every label set. */
  static readonly ALL = new Selector([]);

  /**
   * Builds a selector from the user's `matchLabels` / `matchExpressions`.
   * Throws LABEL_INVALID naming the key; callers add the field path.
   */
  static fromLabelSelector(spec: LabelSelectorSpec): Selector {
    const reqs: Requirement[] = [];
    for (const [k, v] of Object.entries(spec.matchLabels ?? {})) {
      const { source, key } = splitSourceKey(k, "any");
      checkKey(key, k);
      checkValue(String(v), k);
      reqs.push({ source, key, operator: "In", values: [String(v)] });
    }
    for (const e of spec.matchExpressions ?? []) {
      const { source, key } = splitSourceKey(e.key, "any");
      checkKey(key, e.key);
      if (!(OPERATORS as readonly string[]).includes(e.operator)) {
        throw new MembraneError(
          "LABEL_INVALID",
          `Cannot use operator "${e.operator}" on key "${e.key}": it must be one of In, NotIn, Exists, DoesNotExist`,
        );
      }
      const op = e.operator as Operator;
      const values = e.values ?? [];
      if ((op === "In" || op === "NotIn") && values.length === 0) {
        throw new MembraneError("LABEL_INVALID", `Cannot use ${op} on key "${e.key}" without values`);
      }
      if ((op === "Exists" || op === "DoesNotExist") && values.length > 0) {
        throw new MembraneError("LABEL_INVALID", `Cannot give values to ${op} on key "${e.key}"`);
      }
      for (const v of values) checkValue(String(v), e.key);
      reqs.push({ source, key, operator: op, values: values.map(String) });
    }
    return new Selector(reqs);
  }

  /** A new selector with extra requirements ANDed. */
  and(...extra: Requirement[]): Selector {
    return new Selector([...this.requirements, ...extra]);
  }

  /** True when some requirement constrains this key (with source `source` or `any`). */
  constrains(source: string, key: string): boolean {
    return this.requirements.some((r) => r.key === key && (r.source === source || r.source === "any"));
  }

  hasSource(source: string): boolean {
    return this.requirements.some((r) => r.source === source);
  }

  isEmpty(): boolean {
    return this.requirements.length === 0;
  }

  matches(labels: LabelSet): boolean {
    for (const r of this.requirements) if (!requirementMatches(r, labels)) return false;
    return true;
  }

  /** Canonical text; equal selectors give equal strings (the SelectorCache key). */
  toString(): string {
    return this.str;
  }
}

export function requirementMatches(r: Requirement, labels: LabelSet): boolean {
  const vals = labels.values(r.source, r.key);
  switch (r.operator) {
    case "Exists":
      return vals.length > 0;
    case "DoesNotExist":
      return vals.length === 0;
    case "In":
      return vals.some((v) => r.values.includes(v));
    case "NotIn":
      return !vals.some((v) => r.values.includes(v));
  }
}

export function requirementString(r: Requirement): string {
  const k = `${r.source}:${r.key}`;
  switch (r.operator) {
    case "Exists":
      return k;
    case "DoesNotExist":
      return `!${k}`;
    case "In":
      return r.values.length === 1 ? `${k}=${r.values[0]}` : `${k} in (${r.values.join("|")})`;
    case "NotIn":
      return `${k} notin (${r.values.join("|")})`;
  }
}

// Kubernetes label syntax: an optional DNS-subdomain prefix and "/", then a
// name of at most 63 characters, alphanumeric at both ends.
const NAME_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const PREFIX_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function checkKey(key: string, shown: string): void {
  const slash = key.lastIndexOf("/");
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  if (!NAME_RE.test(name) || (prefix !== undefined && !PREFIX_RE.test(prefix))) {
    throw new MembraneError(
      "LABEL_INVALID",
      `Cannot use label key "${shown}": a key is an optional DNS prefix and "/", then 1-63 characters [A-Za-z0-9-_.] starting and ending alphanumeric`,
    );
  }
}

export function checkValue(value: string, key: string): void {
  if (value !== "" && !NAME_RE.test(value)) {
    throw new MembraneError(
      "LABEL_INVALID",
      `Cannot use label value "${value}" for key "${key}": a value is empty or 1-63 characters [A-Za-z0-9-_.] starting and ending alphanumeric`,
    );
  }
}
