/**
 * The DNS rules' verdict per (policy, name), remembered: most queries ask the
 * same few names, and matching a name against a spec's rules normalises and
 * splits it every time.
 *
 *   admits(policy, name) --per stage--> cache of that stage's L7Spec --hit--> verdict
 *                                                                 \--miss--> compileDnsRules(spec.dns)(name), kept
 *
 * The cache is keyed by the L7Spec object the policy lookup returns, not by
 * an identity: a policy change gives the endpoint a new spec object (new
 * revision), so a verdict can never outlive the policy it came from, and an
 * identity's verdicts go with its spec (a WeakMap). Each spec keeps at most
 * `maxNames` names; past that its cache starts over (a flood of random names
 * costs what it cost before, never memory).
 */
import { compileDnsRules } from "../../policy/l7/fqdn.js";
import type { L7Spec } from "../../policy/mapstate.js";
import type { L7LookupResult } from "../types.js";

interface SpecCache {
  readonly match: (name: string) => boolean;
  readonly names: Map<string, boolean>;
}

export class DnsVerdicts {
  private readonly specs = new WeakMap<L7Spec, SpecCache>();

  constructor(private readonly maxNames = 4096) {}

  /** Every stage of `policy` admits `name` (an allowAll stage admits everything). */
  admits(policy: L7LookupResult, name: string): boolean {
    for (let s: L7LookupResult | undefined = policy; s; s = s.also)
      if (!s.allowAll && !this.specAdmits(s.spec, name)) return false;
    return true;
  }

  private specAdmits(spec: L7Spec, name: string): boolean {
    let c = this.specs.get(spec);
    if (!c) this.specs.set(spec, (c = { match: compileDnsRules(spec.dns), names: new Map() }));
    const known = c.names.get(name);
    if (known !== undefined) return known;
    const v = c.match(name);
    if (c.names.size >= this.maxNames) c.names.clear();
    c.names.set(name, v);
    return v;
  }
}
