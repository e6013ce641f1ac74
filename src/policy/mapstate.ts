/**
 * MapState: an endpoint's policy for one direction, shaped for the kernel.
 *
 *   key   (peer identity | 0 = any, protocol | 0 = any, port range)
 *   value allow | deny, the L7 rules the proxy enforces, the auth type,
 *         and the rule elements it came from
 *
 * Entries may overlap (an L3-only allow and a port allow for the same peer).
 * `lookup` defines what overlapping entries mean, and is the one definition
 * every other view (the flattened kernel segments, traces, flows) follows:
 *
 *   1. any matching deny entry            -> deny (deny beats allow, whatever the specificity)
 *      only deny entries of audit-mode policies match -> audit (let through, recorded)
 *   2. else any matching allow entry      -> allow
 *        L7: the L7 entries on exactly this (protocol, port) apply; their rules are ORed.
 *            An allow WITHOUT L7 on the same exact (protocol, port) for a peer that matches
 *            shadows them (everything allowed, still through the proxy). A broader allow
 *            (L3-only, a wider range) does not: the L7 rules stay enforced.
 *        auth: required if any matching allow entry requires it.
 *   3. else no entry                      -> the direction's default (deny if enforced)
 *
 * `flatten` turns this into disjoint segments per identity for nftables.
 */
import type { AuthMode, DnsRule, HttpRule, KafkaRule, RuleOrigin, TlsContext } from "./types.js";

export type L7Parser = "http" | "dns" | "kafka" | "tls";

export interface L7Spec {
  readonly parser: L7Parser;
  readonly http: readonly HttpRule[];
  readonly dns: readonly DnsRule[];
  readonly kafka: readonly KafkaRule[];
  /** TLS SNI patterns; with `http` rules this means TLS interception. */
  readonly serverNames: readonly string[];
  /** TLS interception: the proxy terminates the client's TLS with this secret's certificate. */
  readonly terminatingTLS?: TlsContext;
  /** TLS interception: the proxy re-encrypts towards the destination, verified with this secret's CA. */
  readonly originatingTLS?: TlsContext;
}

/** The TLS contexts of specs merged into one: the first one given of each kind wins. */
export function mergedTlsContexts(
  specs: readonly (L7Spec | undefined)[],
): Pick<L7Spec, "terminatingTLS" | "originatingTLS"> {
  const t = specs.find((s) => s?.terminatingTLS)?.terminatingTLS;
  const o = specs.find((s) => s?.originatingTLS)?.originatingTLS;
  return { ...(t ? { terminatingTLS: t } : {}), ...(o ? { originatingTLS: o } : {}) };
}

export interface MapStateEntry {
  /** 0 = any identity. */
  readonly identity: number;
  /** 0 = any protocol (then lo..hi is 0..65535). ICMP types sit in the port field. */
  readonly proto: number;
  readonly lo: number;
  readonly hi: number;
  readonly deny: boolean;
  readonly l7?: L7Spec;
  readonly auth?: AuthMode;
  /** A deny from a policy in audit mode: recorded, not enforced. */
  readonly audit?: true;
  readonly derivedFrom: readonly RuleOrigin[];
}

export type LookupResult =
  | { readonly verdict: "none" }
  | { readonly verdict: "deny"; readonly entries: readonly MapStateEntry[] }
  /** Only deny rules of audit-mode policies match: let through, recorded as AUDIT. */
  | { readonly verdict: "audit"; readonly entries: readonly MapStateEntry[] }
  | {
      readonly verdict: "allow";
      readonly entries: readonly MapStateEntry[];
      /** Set when the connection goes through the proxy. */
      readonly l7?: {
        readonly spec: L7Spec;
        /** Shadowed: an L4 allow on the same port makes every request allowed. */
        readonly allowAll: boolean;
        /** Two different parsers claim this port for this peer: fail closed. */
        readonly conflict: boolean;
      };
      readonly auth?: AuthMode;
    };

export const PROTOS = [1, 6, 17, 58, 132] as const;
const PORT_MAX = 65535;

export class MapState {
  private readonly byIdentity = new Map<number, MapStateEntry[]>();
  private count = 0;
  private flat: FlatSegment[] | undefined;

  add(e: MapStateEntry): void {
    this.flat = undefined;
    let arr = this.byIdentity.get(e.identity);
    if (!arr) this.byIdentity.set(e.identity, (arr = []));
    arr.push(e);
    this.count++;
  }

  get size(): number {
    return this.count;
  }

  identities(): IterableIterator<number> {
    return this.byIdentity.keys();
  }

  *entries(): Iterable<MapStateEntry> {
    for (const arr of this.byIdentity.values()) yield* arr;
  }

  entriesFor(identity: number): readonly MapStateEntry[] {
    return this.byIdentity.get(identity) ?? [];
  }

  /** What the policy says for a new connection from/to `identity` on (proto, port). */
  lookup(identity: number, proto: number, port: number): LookupResult {
    const matching: MapStateEntry[] = [];
    const consider = (arr: readonly MapStateEntry[] | undefined): void => {
      for (const e of arr ?? []) {
        if ((e.proto === 0 || e.proto === proto) && e.lo <= port && port <= e.hi) matching.push(e);
      }
    };
    consider(this.byIdentity.get(identity));
    if (identity !== 0) consider(this.byIdentity.get(0));
    return resolveMatching(matching, proto, port);
  }

  /**
   * Disjoint segments for the kernel: per identity (0 = any), non-overlapping
   * (proto, lo..hi) with the verdict `lookup` gives there. A specific
   * identity's segments already include the effect of identity-0 entries, so
   * "specific identity first, then identity 0" in the kernel equals `lookup`.
   * Protocol 0 stands for every protocol not listed for that identity: alone
   * when the identity's verdict is the same for every protocol and port,
   * otherwise next to the per-protocol segments (what rules without ports say
   * about GRE, ESP and every other protocol).
   */
  flatten(): readonly FlatSegment[] {
    if (this.flat) return this.flat;
    const out: FlatSegment[] = [];
    const wildcard = this.byIdentity.get(0) ?? [];
    for (const [identity, own] of this.byIdentity) {
      const relevant = identity === 0 ? own : [...own, ...wildcard];
      out.push(...flattenIdentity(identity, relevant));
    }
    this.flat = out;
    return out;
  }
}

export interface FlatSegment {
  readonly identity: number;
  readonly proto: number;
  readonly lo: number;
  readonly hi: number;
  readonly verdict: "allow" | "deny" | "audit";
  /** The connection is redirected to the proxy (L7 rules apply). */
  readonly redirect: boolean;
  /** With `redirect`: which proxy parser, or "conflict" when two claim the port (fail closed). */
  readonly parser?: L7Parser | "conflict";
  readonly authRequired: boolean;
  readonly derivedFrom: readonly RuleOrigin[];
}

function resolveMatching(matching: MapStateEntry[], proto: number, port: number): LookupResult {
  if (matching.length === 0) return { verdict: "none" };
  const denies = matching.filter((e) => e.deny && !e.audit);
  if (denies.length > 0) return { verdict: "deny", entries: denies };
  const audited = matching.filter((e) => e.deny);
  if (audited.length > 0) return { verdict: "audit", entries: audited };
  const l7s = matching.filter((e) => e.l7 !== undefined);
  const authEntry = matching.find((e) => e.auth === "required" || e.auth === "test-always-fail");
  const auth = authEntry?.auth;
  if (l7s.length === 0)
    return auth ? { verdict: "allow", entries: matching, auth } : { verdict: "allow", entries: matching };
  const parsers = new Set(l7s.map((e) => e.l7?.parser));
  const spec = mergeL7(l7s);
  const allowAll = matching.some(
    (e) => e.l7 === undefined && e.proto === proto && e.lo === port && e.hi === port,
  );
  const l7 = { spec, allowAll, conflict: parsers.size > 1 };
  return auth
    ? { verdict: "allow", entries: matching, l7, auth }
    : { verdict: "allow", entries: matching, l7 };
}

function mergeL7(entries: readonly MapStateEntry[]): L7Spec {
  const first = entries[0]?.l7;
  return {
    parser: first?.parser ?? "http",
    http: entries.flatMap((e) => e.l7?.http ?? []),
    dns: entries.flatMap((e) => e.l7?.dns ?? []),
    kafka: entries.flatMap((e) => e.l7?.kafka ?? []),
    serverNames: entries.flatMap((e) => e.l7?.serverNames ?? []),
    ...mergedTlsContexts(entries.map((e) => e.l7)),
  };
}

function flattenIdentity(identity: number, entries: readonly MapStateEntry[]): FlatSegment[] {
  const segs: FlatSegment[] = [];
  // The protocols with ports (and ICMP), plus any other protocol a rule names
  // (GRE, ESP, ... : Cilium's extended IP protocols, matched on number alone).
  const extra = [...new Set(entries.map((e) => e.proto))]
    .filter((p) => p !== 0 && !(PROTOS as readonly number[]).includes(p))
    .sort((a, b) => a - b);
  const protos = [...PROTOS, ...extra];
  for (const proto of protos) {
    const max = proto === 1 || proto === 58 ? 255 : PORT_MAX;
    const cuts = new Set<number>([0, max + 1]);
    for (const e of entries) {
      if (e.proto !== 0 && e.proto !== proto) continue;
      if (e.lo <= max) cuts.add(e.lo);
      if (e.hi + 1 <= max) cuts.add(e.hi + 1);
    }
    const points = [...cuts].sort((a, b) => a - b);
    let prev: FlatSegment | undefined;
    for (let i = 0; i + 1 < points.length; i++) {
      const lo = points[i] as number;
      const hi = (points[i + 1] as number) - 1;
      const matching = entries.filter(
        (e) => (e.proto === 0 || e.proto === proto) && e.lo <= lo && hi <= e.hi,
      );
      const r = resolveMatching(matching, proto, lo);
      if (r.verdict === "none") {
        prev = undefined;
        continue;
      }
      // An L7 redirect is per exact port: never merge it with neighbours.
      const l7 = r.verdict === "allow" ? r.l7 : undefined;
      const redirect = l7 !== undefined;
      const seg: FlatSegment = {
        identity,
        proto,
        lo,
        hi,
        verdict: r.verdict,
        redirect,
        ...(l7 ? { parser: l7.conflict ? ("conflict" as const) : l7.spec.parser } : {}),
        authRequired: r.verdict === "allow" && r.auth !== undefined,
        derivedFrom: r.entries.map((e) => e.derivedFrom).flat(),
      };
      if (prev && !redirect && !prev.redirect && sameOutcome(prev, seg) && prev.hi + 1 === lo) {
        const merged: FlatSegment = { ...prev, hi };
        segs[segs.length - 1] = merged;
        prev = merged;
      } else {
        segs.push(seg);
        prev = seg;
      }
    }
  }
  // Every other protocol (none of the above) gets what the protocol-0 entries
  // (rules without ports) say: one protocol-0 segment, which the kernel
  // compiler cuts around the protocols listed above.
  const any = entries.filter((e) => e.proto === 0);
  const r = resolveMatching(any, 0, 0);
  const rest: FlatSegment | undefined =
    r.verdict === "none"
      ? undefined
      : {
          identity,
          proto: 0,
          lo: 0,
          hi: PORT_MAX,
          verdict: r.verdict,
          redirect: false,
          authRequired: r.verdict === "allow" && r.auth !== undefined,
          derivedFrom: r.entries.map((e) => e.derivedFrom).flat(),
        };
  // Collapse to that one protocol-0 segment when every protocol has one identical full-range segment.
  if (
    rest &&
    segs.length === protos.length &&
    segs.every((s) => s.lo === 0 && s.hi >= 255 && sameOutcome(s, segs[0] as FlatSegment))
  ) {
    const full = segs.every((s) => (s.proto === 1 || s.proto === 58 ? s.hi === 255 : s.hi === PORT_MAX));
    if (full) return [{ ...(segs[0] as FlatSegment), proto: 0, lo: 0, hi: PORT_MAX }];
  }
  return rest ? [...segs, rest] : segs;
}

function sameOutcome(a: FlatSegment, b: FlatSegment): boolean {
  return (
    a.verdict === b.verdict &&
    a.redirect === b.redirect &&
    a.authRequired === b.authRequired &&
    originKey(a.derivedFrom) === originKey(b.derivedFrom)
  );
}

function originKey(o: readonly RuleOrigin[]): string {
  return o.map((r) => `${r.policy.namespace ?? ""}/${r.policy.name}/${r.path}`).join(";");
}
