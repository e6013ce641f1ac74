/**
 * PolicyCache: the computed SelectorPolicies (Cilium's name) and which
 * endpoints must regenerate. Endpoints with the same identity and the same
 * named ports share one SelectorPolicy; a change marks stale only the
 * SelectorPolicies it can affect, and their holders dirty.
 *
 *   selectors whose selections changed --markChanged--+
 *   rules added / removed (their subjects) --staleFor--+--> SelectorPolicy.stale --> holders dirty
 *   named ports changed --markNamedPortUsers-----------+
 *
 *   get(endpoint, signature, compute) --> the shared SelectorPolicy, recomputed only if stale
 *
 * Make-before-break: a recomputed SelectorPolicy holds its new selectors
 * before the previous ones are released, so unchanged selections stay cached.
 *
 * A journal (changesSince) names the endpoints that were touched, forgotten or
 * handed another SelectorPolicy, so that consumers rebuild only those.
 */
import { ChangeJournal } from "./change-journal.js";
import type { NamedPort } from "./query.js";
import type { DirectionPolicy } from "./resolve.js";
import type { SelectorCache } from "./selectorcache.js";

export interface SharedPolicy {
  readonly identity: number;
  readonly ingress: DirectionPolicy;
  readonly egress: DirectionPolicy;
  readonly revision: number;
  stale: boolean;
  readonly holders: Set<string>;
}

/** What a computation of a SelectorPolicy yields. */
export type ComputedPolicy = Pick<SharedPolicy, "identity" | "ingress" | "egress" | "revision">;

/** The SelectorPolicy an endpoint uses: its identity and its own named ports. */
export function policySignature(identity: number, namedPorts: readonly NamedPort[]): string {
  return `${identity}|${namedPorts.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(",")}`;
}

export class PolicyCache {
  /** Signature -> SelectorPolicy, shared by the endpoints holding it. */
  private readonly selectorPolicies = new Map<string, SharedPolicy>();
  /** Endpoint key -> the SelectorPolicy signature it uses. */
  private readonly endpointSig = new Map<string, string>();
  /** Endpoints whose policy may have changed since they were last computed. */
  private readonly dirty = new Set<string>();
  /** SelectorPolicies computed so far (a change that touches only host addresses computes none). */
  private computed = 0;
  /** Endpoints touched, forgotten, or handed a SelectorPolicy other than the last one. */
  private readonly journal = new ChangeJournal();
  /** The SelectorPolicy each endpoint was last handed. */
  private readonly handed = new Map<string, SharedPolicy>();

  constructor(private readonly cache: SelectorCache) {}

  /** Marks stale the SelectorPolicies that use any of these selectors. */
  markChanged(selectorKeys: readonly string[]): void {
    if (selectorKeys.length === 0) return;
    const changed = new Set(selectorKeys);
    for (const sp of this.selectorPolicies.values()) {
      if (sp.stale) continue;
      if (
        sp.ingress.selectorKeys.some((k) => changed.has(k)) ||
        sp.egress.selectorKeys.some((k) => changed.has(k))
      ) {
        this.stale(sp);
      }
    }
  }

  /** Marks stale the SelectorPolicies whose egress names a port by name. */
  markNamedPortUsers(): void {
    for (const sp of this.selectorPolicies.values()) {
      if (
        sp.egress.rules.some((r) => r.egress.some((e) => e.ports?.some((p) => p.ports.some((pp) => pp.name))))
      ) {
        this.stale(sp);
      }
    }
  }

  /** Marks stale the SelectorPolicies of these identities (the subjects of changed rules). */
  staleFor(identities: ReadonlySet<number>): void {
    for (const sp of this.selectorPolicies.values()) if (identities.has(sp.identity)) this.stale(sp);
  }

  /** The endpoint must regenerate (it changed itself). */
  touch(key: string): void {
    this.dirty.add(key);
    this.journal.record(key);
  }

  /** Changes whenever an endpoint is touched, forgotten or handed another SelectorPolicy. */
  get revision(): number {
    return this.journal.revision;
  }

  /** Endpoints touched, forgotten or handed another SelectorPolicy after `revision` (undefined: too far back). */
  changesSince(revision: number): Set<string> | undefined {
    return this.journal.changesSince(revision);
  }

  /** Whether the endpoint must regenerate: touched, or never computed. */
  needsRegeneration(key: string): boolean {
    return this.dirty.has(key) || !this.endpointSig.has(key);
  }

  /**
   * The endpoints that must regenerate: every endpoint the engine knows is
   * touched when it is added or changed, so this is all of them (no walk).
   */
  dirtyKeys(): string[] {
    return [...this.dirty];
  }

  /** How many SelectorPolicies have been computed (a counter for tests and benchmarks). */
  get computations(): number {
    return this.computed;
  }

  /** The endpoint is gone: it no longer holds its SelectorPolicy. */
  forget(key: string): void {
    this.detach(key);
    this.dirty.delete(key);
    this.handed.delete(key);
    this.journal.record(key);
  }

  /**
   * The SelectorPolicy of endpoint `key` with signature `sig`, computed by
   * `compute` when there is none or it is stale; the endpoint becomes clean.
   */
  get(key: string, sig: string, compute: () => ComputedPolicy): SharedPolicy {
    if (this.endpointSig.get(key) !== sig) {
      this.detach(key);
      this.endpointSig.set(key, sig);
    }
    let sp = this.selectorPolicies.get(sig);
    if (!sp || sp.stale) {
      const computed = compute();
      this.computed++;
      // Release the previous selectors only now that the new ones are held (make-before-break).
      if (sp) for (const k of [...sp.ingress.selectorKeys, ...sp.egress.selectorKeys]) this.cache.remove(k);
      const holders: Set<string> = sp?.holders ?? new Set<string>();
      sp = { ...computed, stale: false, holders };
      this.selectorPolicies.set(sig, sp);
    }
    sp.holders.add(key);
    this.dirty.delete(key);
    if (this.handed.get(key) !== sp) {
      this.handed.set(key, sp);
      this.journal.record(key);
    }
    return sp;
  }

  private stale(sp: SharedPolicy): void {
    sp.stale = true;
    for (const k of sp.holders) this.dirty.add(k);
  }

  /** Stops an endpoint from using its SelectorPolicy; the last user releases its selectors. */
  private detach(key: string): void {
    const sig = this.endpointSig.get(key);
    if (sig === undefined) return;
    this.endpointSig.delete(key);
    const sp = this.selectorPolicies.get(sig);
    if (!sp) return;
    sp.holders.delete(key);
    if (sp.holders.size === 0) {
      for (const k of [...sp.ingress.selectorKeys, ...sp.egress.selectorKeys]) this.cache.remove(k);
      this.selectorPolicies.delete(sig);
    }
  }
}
