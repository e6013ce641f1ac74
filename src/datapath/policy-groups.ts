/**
 * Policy groups: endpoints whose compiled policy for a direction is the same
 * share one set of chains and verdict maps (Cilium computes one SelectorPolicy
 * per identity and shares it between the endpoints that have it).
 *
 *   endpoint e<id>_<dir> (its own: anti-spoofing, ct checks)  --goto-->  group g<n>_<dir>
 *   group g<n>_<dir>: [jump mark_dst] + lookups in @g<n>_<dir>_{id,idr,idi,any,anyr,anyi}
 *                     + enforced ? log + drop : return
 *     verdicts: goto g<n>_<dir>_a<rule> | _r<rule> | _p<rule>[d] | _u<rule>
 *
 * What identifies a group: its content key (groupKey: direction, enforcement and
 * the segments with their actions and rule ids), which is everything its chains and
 * maps are compiled from besides the table-wide context (log group, proxy, rule
 * texts: the same for every endpoint). Named ports are resolved per endpoint into
 * the segments, so two endpoints of one identity with different named ports get
 * different keys, and do not share.
 *
 * Its name: n is the smallest id among the endpoints with that key. So
 *   - the name is a function of the desired state alone: a from-scratch compile (a
 *     restart's adoption by stamp, the repair path) names every group as the
 *     incremental path does, and a restart with nothing changed does nothing;
 *   - it stays while that endpoint stays in the group: when all the members of a
 *     group move the same way (a policy change for their identity), the new key takes
 *     the old name and the group's maps are updated in place, by element delta, once
 *     for the group (incremental.ts); the member endpoints' chains do not change;
 *   - an endpoint that diverges joins the group of its new key (or founds one); a
 *     group whose smallest member leaves is renamed (its chains and maps made under
 *     the new name, its members' chains rewritten, the old name removed), all in the
 *     one batch.
 * A content digest as the name would be as deterministic, but every policy change
 * would then create the group anew and rewrite every member's chain.
 *
 * The verdict chains are shared, so their NFLOG prefixes name the group (`g<n>`), not
 * an endpoint: the flow observer takes the endpoint from the packet's address
 * (abi/log-prefix.ts). A direction with no segment, not enforced and not audited has
 * no group: the endpoint's chain just returns.
 */
import { auditPrefix, logPrefix } from "../abi/log-prefix.js";
import { frozenChain, type NftChain, type NftMap } from "./model.js";
import { compileSegments } from "./segments.js";
import { invalid } from "./compile-error.js";
import {
  CT_AUTH_NEEDED,
  CT_KEEP_ON_AUTH,
  CT_REDIRECT_DNS,
  CT_REDIRECT_L7,
  IDENTITY_MASK,
  type DirectionPolicy,
  type PolicySegment,
  type ProxyTarget,
} from "./types.js";

export type Dir = "in" | "out";

/** The shared chain that sets the mark to the destination's identity (compile.ts). */
export const MARK_DST_CHAIN = "mark_dst";

/** What every group is compiled under besides its policy (the same for all of a table's groups). */
export interface GroupContext {
  /** NFLOG group. */
  readonly group: number;
  /** Rule id -> text (for comments). */
  readonly ruleText: (id: number) => string | undefined;
  readonly proxy?: ProxyTarget;
}

/** A group's objects in the table. */
export interface GroupPart {
  /** g<n>_<dir>: its policy chain, and the prefix of its maps' and verdict chains' names. */
  readonly name: string;
  readonly dir: Dir;
  /** groupKey() of its policy. */
  readonly key: string;
  readonly maps: NftMap[];
  readonly chains: NftChain[];
  /** The rule texts its comments used (the part is stale when one changed). */
  readonly texts: ReadonlyMap<number, string | undefined>;
}

/** An endpoint direction's group: its name and key (undefined: the direction has no group). */
export interface GroupRef {
  readonly name: string;
  readonly key: string;
}

export const groupName = (n: number, dir: Dir): string => `g${n}_${dir}`;

export const hex = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;
const MASK = hex(IDENTITY_MASK);

/**
 * A rule comment: printable, no double quote, and short enough that with the
 * chain's hash tag in front (model.ts chainRulesWithHash, `mbr:h=<12 hex> `: 19
 * characters) it stays within nft's limit of 128 characters per comment.
 */
const commentText = (s: string): string => s.replace(/[^\x20-\x7e]|"/g, "'").slice(0, 109);

const segText = (s: PolicySegment): string =>
  `${s.identity},${s.proto},${s.lo},${s.hi},${s.action}${s.proxy ?? ""}${s.ruleId}${s.authSelf !== undefined ? `@${s.authSelf}` : ""}`;

/**
 * The content key of a direction's policy, or undefined when it needs no group (no
 * segment, not enforced, not audited). Two directions with the same key compile to
 * the same chains and maps (under one name).
 */
export function groupKey(dir: Dir, policy: DirectionPolicy): string | undefined {
  if (policy.segments.length === 0 && !policy.enforced && policy.auditDefault !== true) return undefined;
  const head = `${dir}|${policy.enforced ? 1 : 0}|${policy.auditDefault === true ? 1 : 0}|`;
  let out = head;
  for (const s of policy.segments) out += segText(s) + ";";
  return out;
}

/**
 * The lookups. No anonymous sets (`meta l4proto { 1, 58 }`): nfnl/objects.ts writes these
 * rules without nft, and an anonymous set is one more object per rule. The port maps skip
 * ICMP with two compares; the ICMP maps need no filter at all, since their keys name only
 * protocols 1 and 58 (segments.ts): another protocol's packet misses them.
 */
const NOT_ICMP = "meta l4proto != 1 meta l4proto != 58";
function lookupRules(base: string, present: ReadonlySet<string>): string[] {
  const idPort = `meta mark & ${MASK} . meta l4proto . th dport vmap @${base}_`;
  return [
    ...(present.has("id") ? [`${NOT_ICMP} ${idPort}id`] : []),
    ...(present.has("idr") ? [`${NOT_ICMP} ${idPort}idr`] : []),
    ...(present.has("idi") ? [`meta mark & ${MASK} . meta l4proto . @th,0,8 vmap @${base}_idi`] : []),
    ...(present.has("any") ? [`${NOT_ICMP} meta l4proto . th dport vmap @${base}_any`] : []),
    ...(present.has("anyr") ? [`${NOT_ICMP} meta l4proto . th dport vmap @${base}_anyr`] : []),
    ...(present.has("anyi") ? [`meta l4proto . @th,0,8 vmap @${base}_anyi`] : []),
  ];
}

/**
 * Compiles group `n` of direction `dir` from one member's policy (all members have
 * the same key). `where` names that member's direction in errors. Pure.
 * n = "host": the host firewall's policy (compile-host.ts), chains `host_<dir>...`, logs `h0`.
 */
export function compileGroup(
  n: number | "host",
  dir: Dir,
  key: string,
  policy: DirectionPolicy,
  ctx: GroupContext,
  where: string,
): GroupPart {
  const owner = n === "host" ? "host" : { group: n };
  const base = n === "host" ? `host_${dir}` : groupName(n, dir);
  const log = (prefix: string): string => `log group ${ctx.group} prefix "${prefix}"`;
  const texts = new Map<number, string | undefined>();
  const withText = (rule: string, id: number): string => {
    const t = ctx.ruleText(id);
    texts.set(id, t);
    return t === undefined ? rule : `${rule} comment "${commentText(t)}"`;
  };
  const proxy = ctx.proxy;
  const verdictChains = new Map<string, NftChain>();
  const chainFor = (name: string, make: () => string[]): string => {
    if (!verdictChains.has(name)) verdictChains.set(name, { name, rules: make() });
    return `goto ${name}`;
  };
  const verdict = (s: PolicySegment): string => {
    const id = s.ruleId;
    if (s.action === "audit")
      // Audit mode: log what a deny would have dropped, then let it through (return).
      return chainFor(`${base}_u${id}`, () => [withText(log(auditPrefix(owner, dir, `r${id}`)), id)]);
    if (s.action === "redirect") {
      if (!proxy) throw invalid(where, "a segment redirects to the proxy but the state names no proxy");
      // Allowed at L4, handed to the proxy: log the verdict, mark the connection
      // for the DNAT in nat_c, and return so that the other end still decides.
      const bit = s.proxy === "dns" ? CT_REDIRECT_DNS : CT_REDIRECT_L7;
      return chainFor(`${base}_p${id}${s.proxy === "dns" ? "d" : ""}`, () => [
        withText(log(logPrefix(owner, dir, { kind: "redirect", ruleId: id })), id),
        `ct mark set ct mark or ${hex(bit)}`,
      ]);
    }
    if (s.action === "auth") {
      // Allowed once the pair is authenticated (datapath/compile-auth.ts, src/auth/): the
      // connection's mark carries the need and the destination's identity; the packet mark
      // carries the source's once pre_c is done. Egress: the destination is the peer (the
      // mark, after mark_dst; a new connection's ct mark is still 0 here). Ingress: this
      // endpoint is the destination; the redirect bits an egress set are kept.
      const self = s.authSelf;
      if (self === undefined || !Number.isInteger(self) || self < 0 || self > IDENTITY_MASK)
        throw invalid(where, "a segment requires authentication but names no identity of its own");
      return chainFor(`${base}_t${id}`, () => [
        ...(dir === "out"
          ? [`jump ${MARK_DST_CHAIN}`, `ct mark set meta mark and ${MASK} or ${hex(CT_AUTH_NEEDED)}`]
          : [`ct mark set ct mark and ${hex(CT_KEEP_ON_AUTH)} or ${hex((CT_AUTH_NEEDED | self) >>> 0)}`]),
        withText(log(logPrefix(owner, dir, { kind: "authAllow", ruleId: id })), id),
      ]);
    }
    if (s.action === "allow")
      // A new connection the policy allows: log the verdict (Hubble's policy-verdict
      // event) and return, so the other endpoint's direction still has its say.
      // Established packets never get here (accepted by the endpoint's chain), so this
      // is one event per new connection and direction.
      return chainFor(`${base}_a${id}`, () => [
        withText(log(logPrefix(owner, dir, { kind: "allow", ruleId: id })), id),
      ]);
    return chainFor(`${base}_r${id}`, () => [
      withText(`${log(logPrefix(owner, dir, { kind: "rule", ruleId: id }))} drop`, id),
    ]);
  };
  const el = compileSegments(policy.segments, verdict, where);
  const kinds = [
    ["id", ["mark", "proto", "port"], el.id, false],
    ["idr", ["mark", "proto", "port"], el.idr, true],
    ["idi", ["mark", "proto", "byte"], el.idi, true],
    ["any", ["proto", "port"], el.any, false],
    ["anyr", ["proto", "port"], el.anyr, true],
    ["anyi", ["proto", "byte"], el.anyi, true],
  ] as const;
  const present = new Set<string>();
  const maps: NftMap[] = [];
  for (const [kind, fields, elements, interval] of kinds) {
    // Only maps with elements exist (and only their lookups are in the chain): most groups
    // have no ICMP or wildcard segments, and every map costs on load and read-back.
    if (elements.length === 0) continue;
    present.add(kind);
    maps.push({ name: `${base}_${kind}`, fields: [...fields], valueType: "verdict", interval, elements });
  }
  const rules = [
    // Egress: the peer is the destination, whose identity only new connections need.
    ...(dir === "out" && (present.has("id") || present.has("idr") || present.has("idi"))
      ? [`jump ${MARK_DST_CHAIN}`]
      : []),
    ...lookupRules(base, present),
  ];
  if (policy.enforced) rules.push(`${log(logPrefix(owner, dir, { kind: "default" }))} drop`);
  else if (policy.auditDefault) rules.push(log(auditPrefix(owner, dir, "def")));
  const chains = [
    { name: base, rules },
    ...[...verdictChains.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
  ];
  // Frozen: their hashes (model.ts) are then computed once, whatever reads them.
  return { name: base, dir, key, maps, chains: chains.map(frozenChain), texts };
}

/** True when a rule text a group's comments used has changed (the group must be compiled again). */
export function textsStale(g: GroupPart, ruleText: (id: number) => string | undefined): boolean {
  for (const [id, text] of g.texts) if (ruleText(id) !== text) return true;
  return false;
}

/** The policy of one direction of an endpoint-like record. */
export const policyOf = (
  ep: { readonly ingress: DirectionPolicy; readonly egress: DirectionPolicy },
  dir: Dir,
): DirectionPolicy => (dir === "in" ? ep.ingress : ep.egress);
