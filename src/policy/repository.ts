/**
 * Repository: the policies in force and their rules, in order, with each
 * rule's subject selector held in the SelectorCache (Cilium's Repository).
 *
 *   upsert(PolicyResource) / delete(ref) --> the rules touched (old and new)
 *                  |
 *                  v
 *   rules() --> rulesSelecting(identity)   workload rules whose subject selects it
 *           --> hostRules()                host firewall (nodeSelector) rules
 *           --> auditRules()               rules of policies in audit mode
 *
 * The rule list and the subject selectors are rebuilt lazily, on the first
 * question after a change.
 */
import { nodeLabelSet } from "../labels/node.js";
import type { SelectorCache } from "./selectorcache.js";
import type { PolicyRef, PolicyResource, Rule } from "./types.js";

export class Repository {
  private readonly policies = new Map<string, PolicyResource>();
  private rulesCache: Rule[] | undefined;
  private auditCache: Set<Rule> | undefined;
  private readonly subjectKeys = new Map<Rule, string>();

  constructor(private readonly cache: SelectorCache) {}

  /** Adds or replaces a policy; returns the rules it touched (the old ones, then the new). */
  upsert(res: PolicyResource): Rule[] {
    const k = refKey(res.ref);
    const old = this.policies.get(k);
    this.policies.set(k, res);
    this.changed();
    return [...(old?.rules ?? []), ...res.rules];
  }

  /** Removes a policy; returns its rules, or undefined when it was not there. */
  delete(ref: PolicyRef): readonly Rule[] | undefined {
    const k = refKey(ref);
    const old = this.policies.get(k);
    if (!old) return undefined;
    this.policies.delete(k);
    this.changed();
    return old.rules;
  }

  list(): readonly PolicyResource[] {
    return [...this.policies.values()];
  }

  /** The policies, without a copy. */
  values(): Iterable<PolicyResource> {
    return this.policies.values();
  }

  get(ref: PolicyRef): PolicyResource | undefined {
    return this.policies.get(refKey(ref));
  }

  /** Every rule, in repository order. */
  rules(): Rule[] {
    if (!this.rulesCache) {
      // Hold the new subject selectors before releasing the old ones, so that
      // unchanged selectors keep their cached selections.
      const old = [...this.subjectKeys.values()];
      this.subjectKeys.clear();
      this.rulesCache = [...this.policies.values()].flatMap((p) => p.rules);
      for (const r of this.rulesCache) {
        if (!r.selectsNodes)
          this.subjectKeys.set(r, this.cache.add({ kind: "endpoints", selector: r.subject }));
      }
      for (const k of old) this.cache.remove(k);
    }
    return this.rulesCache;
  }

  /** Rules of policies in audit mode. */
  auditRules(): Set<Rule> {
    if (!this.auditCache || this.rulesCache === undefined) {
      this.auditCache = new Set([...this.policies.values()].filter((p) => p.audit).flatMap((p) => p.rules));
    }
    return this.auditCache;
  }

  /** Rules selecting an identity as subject, in repository order. */
  rulesSelecting(identity: number): Rule[] {
    return this.rules().filter((r) => {
      const k = this.subjectKeys.get(r);
      return k !== undefined && this.cache.selections(k).has(identity);
    });
  }

  /** Host firewall rules (nodeSelector) selecting this node, whose labels are `labels` (labels/node.ts). */
  hostRules(labels: Readonly<Record<string, string>>): Rule[] {
    const nodeLabels = nodeLabelSet(labels);
    return this.rules().filter((r) => r.selectsNodes && r.subject.matches(nodeLabels));
  }

  private changed(): void {
    this.rulesCache = undefined;
    this.auditCache = undefined;
  }
}

function refKey(r: PolicyRef): string {
  return `${r.kind}/${r.namespace ?? ""}/${r.name}`;
}
