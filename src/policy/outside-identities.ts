/**
 * OutsideIdentities: the local identities of addresses outside the cluster,
 * one per CIDR prefix that policies or services name and one per address a
 * DNS answer taught (labelled with every name it answered for).
 *
 *   policies' CIDR peers, services' addresses --+
 *                                               +--> sync() --> identity (cidr:, fqdn:, reserved:world)
 *   DNS answers (learn / forget) ---------------+        |    (syncAddresses: those addresses only)
 *                                                        +--> ipcache prefix, SelectorCache identity
 *                                                        +--> changed(selector keys): who must recompute
 *
 * New identities are allocated before the ones they replace are released
 * (make-before-break), so that a prefix never goes without an identity.
 */
import type { Identity, IdentityAllocatorLike } from "../identity/allocator.js";
import type { IPCache } from "../ipcache/ipcache.js";
import { parseAddr, parsePrefix, prefixString, type Prefix } from "../labels/cidr.js";
import { LabelSet, type Label } from "../labels/label.js";
import type { ResolvedService } from "./peer.js";
import type { SelectorCache } from "./selectorcache.js";
import type { PolicyResource } from "./types.js";

export interface OutsideIdentitiesParams {
  readonly allocator: IdentityAllocatorLike;
  readonly ipcache: IPCache;
  readonly cache: SelectorCache;
  /** Dual stack: outside identities also carry reserved:world-ipv4 / world-ipv6. */
  readonly dualStack: boolean;
  /** Selectors whose selections changed (their users must recompute). */
  readonly changed: (selectorKeys: readonly string[]) => void;
  /** Gives an identity back (the engine also drops it from the SelectorCache when gone). */
  readonly release: (id: number) => void;
}

export class OutsideIdentities {
  /** ip -> names it answered for */
  private readonly dnsNames = new Map<string, Set<string>>();
  /** prefix text -> outside identity */
  private readonly outside = new Map<string, Identity>();
  private readonly outsideSignature = new Map<string, string>();
  /** Host prefix text -> the learned address spellings it stands for (dnsNames keys). */
  private readonly spellings = new Map<string, Set<string>>();
  /** The prefixes policies and services name (text -> prefix), as of the last sync(). */
  private referenced = new Map<string, Prefix>();

  constructor(private readonly p: OutsideIdentitiesParams) {}

  /** Records that `ips` answered for `name` (normalised); cluster addresses are never learned. */
  learn(name: string, ips: readonly string[]): void {
    for (const ip of ips) {
      if (!parseAddr(ip)) continue;
      // toFQDNs never selects cluster addresses.
      const known = this.p.ipcache.lookup(ip).entry;
      if (known && (known.source === "endpoint" || known.source === "node")) continue;
      let names = this.dnsNames.get(ip);
      if (!names) {
        this.dnsNames.set(ip, (names = new Set()));
        const text = hostText(ip);
        if (text !== undefined) {
          let sp = this.spellings.get(text);
          if (!sp) this.spellings.set(text, (sp = new Set()));
          sp.add(ip);
        }
      }
      names.add(name);
    }
  }

  /** Forgets that `ip` answered for `name` (normalised); false when it was not known. */
  forget(name: string, ip: string): boolean {
    const names = this.dnsNames.get(ip);
    if (!names?.delete(name)) return false;
    if (names.size === 0) {
      this.dnsNames.delete(ip);
      const text = hostText(ip);
      const sp = text === undefined ? undefined : this.spellings.get(text);
      sp?.delete(ip);
      if (text !== undefined && sp?.size === 0) this.spellings.delete(text);
    }
    return true;
  }

  /** The DNS-learned addresses, with the names each answered for. */
  learned(): Iterable<[string, ReadonlySet<string>]> {
    return this.dnsNames;
  }

  /** Keeps one local identity per referenced CIDR prefix and per DNS-learned address. */
  sync(policies: Iterable<PolicyResource>, services: Iterable<ResolvedService>): void {
    // What is wanted: every referenced prefix, with the DNS names of its address.
    const want = new Map<string, Want>();
    const add = (p: Prefix, source: "cidr" | "fqdn", names: readonly string[]): void => {
      if (p.bits === 0) return; // 0.0.0.0/0 and ::/0 are the world identity itself
      const text = cachedPrefixText(p);
      const w = want.get(text);
      if (!w) want.set(text, { prefix: p, names: [...names], source });
      else w.names.push(...names);
    };
    for (const p of policies) for (const q of referencedPrefixes(p)) add(q, "cidr", []);
    for (const s of services) for (const q of s.prefixes) add(q, "cidr", []);
    this.referenced = new Map([...want].map(([text, w]) => [text, w.prefix]));
    for (const [ip, names] of this.dnsNames) {
      const p = parsePrefix(ip, true);
      if (p) add(p, "fqdn", [...names]);
    }
    this.update(want, [...this.outside.keys()]);
  }

  /**
   * After learn/forget of `ips`: what sync() would do, for those addresses'
   * prefixes only (a DNS answer costs its addresses, not every learned one).
   */
  syncAddresses(ips: readonly string[]): void {
    const want = new Map<string, Want>();
    const texts: string[] = [];
    for (const ip of ips) {
      const text = hostText(ip);
      if (text === undefined || text.endsWith("/0")) continue;
      texts.push(text);
      const names = [...(this.spellings.get(text) ?? [])].flatMap((s) => [...(this.dnsNames.get(s) ?? [])]);
      const ref = this.referenced.get(text);
      const p = ref ?? parsePrefix(ip, true);
      if (p && (ref || names.length > 0)) want.set(text, { prefix: p, names, source: ref ? "cidr" : "fqdn" });
    }
    this.update(want, texts);
  }

  /** Makes the outside identities of `want` so, and retires those of `others` not wanted. */
  private update(want: ReadonlyMap<string, Want>, others: Iterable<string>): void {
    // Allocate new identities first, then retire the old ones (make-before-break).
    const retired: Identity[] = [];
    for (const [text, w] of want) {
      const cur = this.outside.get(text);
      const signature = w.names.sort().join(",");
      if (cur && this.outsideSignature.get(text) === signature) continue;
      this.outsideSignature.set(text, signature);
      const labels: Label[] = [
        { source: "cidr", key: text, value: "" },
        { source: "reserved", key: "world", value: "" },
        ...w.names.map((n) => ({ source: "fqdn", key: n, value: "" })),
      ];
      if (this.p.dualStack) {
        labels.push({
          source: "reserved",
          key: w.prefix.family === 4 ? "world-ipv4" : "world-ipv6",
          value: "",
        });
      }
      const ident = this.p.allocator.allocateLocal(LabelSet.from(labels), w.prefix);
      this.outside.set(text, ident);
      this.p.ipcache.setPrefix(w.prefix, ident.id, w.source);
      this.p.changed(this.p.cache.upsertIdentity(ident));
      if (cur) retired.push(cur);
    }
    for (const text of others) {
      const cur = this.outside.get(text);
      if (cur && !want.has(text)) {
        this.outside.delete(text);
        this.outsideSignature.delete(text);
        if (cur.prefix) this.p.ipcache.deletePrefix(cur.prefix);
        retired.push(cur);
      }
    }
    for (const ident of retired) this.p.release(ident.id);
  }
}

interface Want {
  readonly prefix: Prefix;
  readonly names: string[];
  readonly source: "cidr" | "fqdn";
}

/** The host prefix text of an address (as sync() keys it); undefined if not an address. */
function hostText(ip: string): string | undefined {
  const p = parsePrefix(ip, true);
  return p ? cachedPrefixText(p) : undefined;
}

const prefixTexts = new WeakMap<Prefix, string>();
/** prefixString, memoised per (immutable) Prefix object: policies are re-scanned on every change. */
function cachedPrefixText(p: Prefix): string {
  let t = prefixTexts.get(p);
  if (t === undefined) prefixTexts.set(p, (t = prefixString(p)));
  return t;
}

const prefixesOf = new WeakMap<PolicyResource, readonly Prefix[]>();
/** Every CIDR prefix (allowed or excepted) a policy names, memoised per (immutable) resource. */
function referencedPrefixes(p: PolicyResource): readonly Prefix[] {
  let out = prefixesOf.get(p);
  if (!out) {
    const list: Prefix[] = [];
    for (const r of p.rules) {
      for (const el of [...r.ingress, ...r.ingressDeny, ...r.egress, ...r.egressDeny]) {
        for (const peer of el.peers) if (peer.kind === "cidr") list.push(peer.prefix, ...peer.except);
      }
    }
    prefixesOf.set(p, (out = list));
  }
  return out;
}
