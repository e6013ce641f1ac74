/**
 * Resolution: the rules selecting an endpoint -> its MapState per direction.
 *
 *   rules selecting the subject --+--> enforced? (default deny per direction)
 *                                 +--> for each element: peers (SelectorCache) x ports -> entries
 *
 * Pure: everything it needs comes in through ResolveContext.
 */
import type { Identity } from "../identity/allocator.js";
import { ID } from "../identity/reserved.js";
import type { Requirement } from "../labels/selector.js";
import { MapState, mergedTlsContexts, type L7Spec, type MapStateEntry } from "./mapstate.js";
import type { SelectorCache } from "./selectorcache.js";
import type { EngineConfig, NamedPort } from "./query.js";
import {
  PROTO_NUMBER,
  type Direction,
  type PeerSelector,
  type PortProtocol,
  type PortRule,
  type Rule,
  type RuleElement,
  type RuleOrigin,
} from "./types.js";

export interface ResolveContext {
  readonly config: EngineConfig;
  readonly cache: SelectorCache;
  /** Named ports of the endpoints that have an identity (for egress named ports). */
  namedPortsOf(identity: number): readonly NamedPort[];
  /** Every identity that has endpoints with named ports (egress named ports to a wildcard peer). */
  identitiesWithNamedPorts(): Iterable<number>;
  /** Whether the rule's policy is in audit mode (its drops are recorded, not enforced). */
  isAudit(rule: Rule): boolean;
}

export interface Subject {
  readonly identity: Identity;
  /** The endpoint's own named ports (ingress named ports). */
  readonly namedPorts: readonly NamedPort[];
}

export interface DirectionPolicy {
  readonly direction: Direction;
  readonly enforced: boolean;
  /** Not enforced, but an audit-mode policy would put it in default deny: record what it would drop. */
  readonly auditDefault: boolean;
  /** Rules that select the subject (for explanations), in repository order. */
  readonly rules: readonly Rule[];
  readonly mapState: MapState;
  /** SelectorCache keys this policy holds (released on recompute). */
  readonly selectorKeys: readonly string[];
}

/** The origin of the implicit "ingress from the local host" allow. */
export const LOCALHOST_ORIGIN: RuleOrigin = {
  policy: { kind: "CiliumClusterwideNetworkPolicy", name: "allow-localhost" },
  path: "agent option allowLocalhost=always",
  deny: false,
};

const ANY_PROTOS = [PROTO_NUMBER.TCP, PROTO_NUMBER.UDP, PROTO_NUMBER.SCTP];

export function resolveDirection(
  ctx: ResolveContext,
  subject: Subject,
  selecting: readonly Rule[],
  direction: Direction,
): DirectionPolicy {
  const mode = ctx.config.policyEnforcementMode;
  const mapState = new MapState();
  const keys: string[] = [];
  if (mode === "never") {
    return {
      direction,
      enforced: false,
      auditDefault: false,
      rules: selecting,
      mapState,
      selectorKeys: keys,
    };
  }
  // An endpoint whose identity is not resolved yet (reserved:init) is always in default deny, as in Cilium.
  const enforced =
    mode === "always" ||
    subject.identity.id === ID.init ||
    selecting.some((r) => r.defaultDeny[direction] && !ctx.isAudit(r));
  const auditDefault = !enforced && selecting.some((r) => r.defaultDeny[direction] && ctx.isAudit(r));

  const allowOf = (r: Rule): readonly RuleElement[] => (direction === "ingress" ? r.ingress : r.egress);
  const denyOf = (r: Rule): readonly RuleElement[] =>
    direction === "ingress" ? r.ingressDeny : r.egressDeny;
  // fromRequires / toRequires: ANDed into every endpoint selector of this direction.
  const requires: Requirement[] = selecting.flatMap((r) =>
    [...allowOf(r), ...denyOf(r)].flatMap((e) => e.requires),
  );

  // Entries with the same key from several elements merge into one; their
  // origins are collected in place (mutable until the MapState is built).
  const merged = new Map<string, { entry: MapStateEntry; from: RuleOrigin[]; l7?: L7Spec }>();
  const put = (e: MapStateEntry): void => {
    const k = `${e.identity}/${e.proto}/${e.lo}/${e.hi}/${e.deny}/${e.audit ?? "-"}/${e.l7?.parser ?? "-"}/${e.auth ?? "-"}`;
    const old = merged.get(k);
    if (!old) {
      merged.set(
        k,
        e.l7 ? { entry: e, from: [...e.derivedFrom], l7: e.l7 } : { entry: e, from: [...e.derivedFrom] },
      );
      return;
    }
    for (const o of e.derivedFrom) if (!old.from.includes(o)) old.from.push(o);
    if (old.l7 && e.l7 && old.l7 !== e.l7) old.l7 = mergeSpecs(old.l7, e.l7);
  };

  for (const rule of selecting) {
    const audit = ctx.isAudit(rule);
    for (const [elements, deny] of [
      [allowOf(rule), false],
      [denyOf(rule), true],
    ] as const) {
      for (const el of elements) {
        const ids = selectedIdentities(ctx, el.peers, requires, keys);
        if (ids.size === 0) continue; // selects nobody: empty means nobody
        for (const key of portKeys(ctx, subject, el, direction, ids)) {
          const base = { proto: key.proto, lo: key.lo, hi: key.hi, deny, derivedFrom: [el.origin] };
          for (const id of key.identities ?? ids) {
            let entry: MapStateEntry = { identity: id, ...base };
            if (!deny && key.l7) entry = { ...entry, l7: key.l7 };
            if (!deny && el.auth && el.auth !== "disabled") entry = { ...entry, auth: el.auth };
            if (deny && audit) entry = { ...entry, audit: true };
            put(entry);
          }
        }
      }
    }
  }
  if ((enforced || auditDefault) && direction === "ingress" && ctx.config.allowLocalhost === "always") {
    put({ identity: ID.host, proto: 0, lo: 0, hi: 65535, deny: false, derivedFrom: [LOCALHOST_ORIGIN] });
  }
  for (const m of merged.values()) {
    const e: MapStateEntry = { ...m.entry, derivedFrom: m.from };
    mapState.add(m.l7 ? { ...e, l7: m.l7 } : e);
  }
  return { direction, enforced, auditDefault, rules: selecting, mapState, selectorKeys: keys };
}

/** Identities an element's peers select; 0 alone stands for "every identity". */
function selectedIdentities(
  ctx: ResolveContext,
  peers: readonly PeerSelector[],
  requires: readonly Requirement[],
  keys: string[],
): Set<number> {
  const out = new Set<number>();
  for (const p of peers) {
    if (p.kind === "all" || (p.kind === "entity" && p.entity === "all")) return new Set([0]);
    const peer: PeerSelector =
      p.kind === "endpoints" && requires.length > 0
        ? { kind: "endpoints", selector: p.selector.and(...requires) }
        : p;
    const key = ctx.cache.add(peer);
    keys.push(key);
    for (const id of ctx.cache.selections(key)) out.add(id);
  }
  return out;
}

interface PortKey {
  proto: number;
  lo: number;
  hi: number;
  l7?: L7Spec;
  /** Set when a named port resolves differently per peer (egress). */
  identities?: number[];
}

function portKeys(
  ctx: ResolveContext,
  subject: Subject,
  el: RuleElement,
  direction: Direction,
  ids: ReadonlySet<number>,
): PortKey[] {
  if (el.icmps) {
    if (!ctx.config.enableICMPRules) return [];
    return el.icmps.map((f) => ({ proto: f.family === "IPv4" ? 1 : 58, lo: f.type, hi: f.type }));
  }
  if (!el.ports) return [{ proto: 0, lo: 0, hi: 65535 }];
  const out: PortKey[] = [];
  for (const pr of el.ports) {
    const l7 = l7Of(pr);
    for (const pp of pr.ports) {
      const protos = pp.protocol === "ANY" ? ANY_PROTOS : [PROTO_NUMBER[pp.protocol]];
      if (pp.name !== undefined) {
        out.push(...namedPortKeys(ctx, subject, pp, direction, ids, protos, l7));
        continue;
      }
      const [lo, hi] = pp.port === 0 ? [0, 65535] : [pp.port, Math.max(pp.port, pp.endPort)];
      for (const proto of protos) out.push(l7 ? { proto, lo, hi, l7 } : { proto, lo, hi });
    }
  }
  return out;
}

function namedPortKeys(
  ctx: ResolveContext,
  subject: Subject,
  pp: PortProtocol,
  direction: Direction,
  ids: ReadonlySet<number>,
  protos: readonly number[],
  l7: L7Spec | undefined,
): PortKey[] {
  const match = (np: NamedPort): boolean => np.name === pp.name && protos.includes(PROTO_NUMBER[np.protocol]);
  const withL7 = (k: PortKey): PortKey => (l7 ? { ...k, l7 } : k);
  if (direction === "ingress") {
    // Resolved against the subject's own ports; unresolvable = allows nothing.
    return subject.namedPorts
      .filter(match)
      .map((np) => withL7({ proto: PROTO_NUMBER[np.protocol], lo: np.port, hi: np.port }));
  }
  // Egress: against the destination's ports, per peer identity.
  const peers = ids.has(0) ? [...ctx.identitiesWithNamedPorts()] : [...ids];
  const out: PortKey[] = [];
  for (const id of peers) {
    for (const np of ctx.namedPortsOf(id).filter(match)) {
      out.push(withL7({ proto: PROTO_NUMBER[np.protocol], lo: np.port, hi: np.port, identities: [id] }));
    }
  }
  return out;
}

function l7Of(pr: PortRule): L7Spec | undefined {
  const serverNames = pr.serverNames ?? [];
  const tls = {
    ...(pr.terminatingTLS ? { terminatingTLS: pr.terminatingTLS } : {}),
    ...(pr.originatingTLS ? { originatingTLS: pr.originatingTLS } : {}),
  };
  if (pr.l7) {
    return {
      parser: pr.l7.kind,
      http: pr.l7.kind === "http" ? pr.l7.rules : [],
      dns: pr.l7.kind === "dns" ? pr.l7.rules : [],
      kafka: pr.l7.kind === "kafka" ? pr.l7.rules : [],
      serverNames,
      ...tls,
    };
  }
  if (serverNames.length > 0) return { parser: "tls", http: [], dns: [], kafka: [], serverNames, ...tls };
  return undefined;
}

function mergeSpecs(a: L7Spec, b: L7Spec): L7Spec {
  return {
    parser: a.parser,
    http: [...a.http, ...b.http],
    dns: [...a.dns, ...b.dns],
    kafka: [...a.kafka, ...b.kafka],
    serverNames: [...a.serverNames, ...b.serverNames],
    ...mergedTlsContexts([a, b]),
  };
}
