/**
 * One endpoint's part of the table: its policy chains and verdict maps, and
 * its entries in the shared dispatch maps. Compiled alone so that a change
 * recompiles only the endpoints it touches (see incremental.ts).
 *
 *   e<id>_out: anti-spoof, ct established/related accept, ct invalid drop, policy lookups
 *   e<id>_in:  ct established/related accept, ct invalid drop, policy lookups
 *     policy lookups, in this order (first hit decides; a map with no elements is
 *     left out, with its lookup):
 *       mark&IDENTITY_MASK . l4proto . dport  vmap @e<id>_<dir>_id    specific identity, one port (hash)
 *       mark&IDENTITY_MASK . l4proto . dport  vmap @e<id>_<dir>_idr   ... port or protocol ranges
 *       mark&IDENTITY_MASK . l4proto . type   vmap @e<id>_<dir>_idi   (ICMP/ICMPv6)
 *       l4proto . dport                       vmap @e<id>_<dir>_any   identity 0 (any), one port (hash)
 *       l4proto . dport                       vmap @e<id>_<dir>_anyr  ... ranges
 *       l4proto . type                        vmap @e<id>_<dir>_anyi
 *     (segments.ts says why single ports have a map of their own)
 *       enforced ? log + drop : return
 *     verdicts: allow = goto e<id>_<dir>_a<rule> (logs the new connection, then returns: the
 *               other direction still has its say), deny = goto e<id>_<dir>_r<rule> (log + drop),
 *               redirect = goto e<id>_<dir>_p<rule> (log, set a ct mark bit, return)
 */
import { MembraneError } from "../errors.js";
import { auditPrefix, logPrefix } from "../abi/log-prefix.js";
import { dispatchElements, type DispatchElements } from "./dispatch.js";
import { frozenChain, type NftChain, type NftMap } from "./model.js";
import { compileSegments } from "./segments.js";
import {
  CT_REDIRECT_DNS,
  CT_REDIRECT_L7,
  IDENTITY_MASK,
  type DatapathEndpoint,
  type ProxyTarget,
} from "./types.js";

/** The shared chain that sets the mark to the destination's identity (compile.ts). */
export const MARK_DST_CHAIN = "mark_dst";

export interface EndpointContext {
  /** NFLOG group. */
  readonly group: number;
  /** Rule id -> text (for comments). */
  readonly ruleText: (id: number) => string | undefined;
  readonly proxy?: ProxyTarget;
}

export interface EndpointParts {
  readonly maps: NftMap[];
  readonly chains: NftChain[];
  /** Its elements in the dispatch maps (dispatch.ts). */
  readonly dispatch: DispatchElements;
  /** The rule texts its comments used (a cached part is stale when one changed). */
  readonly texts: ReadonlyMap<number, string | undefined>;
}

export const hex = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;
const MASK = `0x${IDENTITY_MASK.toString(16).padStart(8, "0")}`;
/**
 * A rule comment: printable, no double quote, and short enough that with the
 * chain's hash tag in front (model.ts chainRulesWithHash, `mbr:h=<12 hex> `: 19
 * characters) it stays within nft's limit of 128 characters per comment.
 */
const commentText = (s: string): string => s.replace(/[^\x20-\x7e]|"/g, "'").slice(0, 109);

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

/** A DatapathState the compiler refuses (shared with compile.ts). */
export function invalid(path: string, why: string): MembraneError {
  return new MembraneError("DATAPATH_STATE_INVALID", `Cannot compile ${path}: ${why}`, {
    location: { path },
    hint: "Fix the endpoint record handed to the datapath.",
  });
}

/** Compiles one endpoint (already validated by compile's checks). Pure. */
export function compileEndpoint(ep: DatapathEndpoint, ctx: EndpointContext): EndpointParts {
  const log = (prefix: string): string => `log group ${ctx.group} prefix "${prefix}"`;
  const texts = new Map<number, string | undefined>();
  const ruleText = (id: number): string | undefined => {
    const t = ctx.ruleText(id);
    texts.set(id, t);
    return t;
  };
  const proxy = ctx.proxy;
  const maps: NftMap[] = [];
  const chains: NftChain[] = [];
  for (const dir of ["in", "out"] as const) {
    const base = `e${ep.id}_${dir}`;
    const policy = dir === "in" ? ep.ingress : ep.egress;
    const denyChains = new Map<number, NftChain>();
    const allowChains = new Map<number, NftChain>();
    const auditChains = new Map<number, NftChain>();
    const redirectChains = new Map<string, NftChain>();
    const verdict = (s: { action: string; ruleId: number; proxy?: "l7" | "dns" }): string => {
      if (s.action === "audit") {
        // Audit mode: log what a deny would have dropped, then let it through (return).
        const name = `${base}_u${s.ruleId}`;
        if (!auditChains.has(s.ruleId)) {
          const rule = log(auditPrefix(ep.id, dir, `r${s.ruleId}`));
          const text = ruleText(s.ruleId);
          auditChains.set(s.ruleId, {
            name,
            rules: [text === undefined ? rule : `${rule} comment "${commentText(text)}"`],
          });
        }
        return `goto ${name}`;
      }
      if (s.action === "redirect") {
        if (!proxy) throw invalid(where, "a segment redirects to the proxy but the state names no proxy");
        // Allowed at L4, handed to the proxy: log the verdict, mark the connection
        // for the DNAT in nat_c, and return so that the other end still decides.
        const bit = s.proxy === "dns" ? CT_REDIRECT_DNS : CT_REDIRECT_L7;
        const name = `${base}_p${s.ruleId}${s.proxy === "dns" ? "d" : ""}`;
        if (!redirectChains.has(name)) {
          const text = ruleText(s.ruleId);
          const rule = log(logPrefix(ep.id, dir, { kind: "redirect", ruleId: s.ruleId }));
          redirectChains.set(name, {
            name,
            rules: [
              text === undefined ? rule : `${rule} comment "${commentText(text)}"`,
              `ct mark set ct mark or ${hex(bit)}`,
            ],
          });
        }
        return `goto ${name}`;
      }
      if (s.action === "allow") {
        // A new connection the policy allows: log the verdict (Hubble's policy-verdict
        // event) and return, so the other endpoint's direction still has its say.
        // Established packets never get here (accepted above), so this is one
        // event per new connection and direction.
        const name = `${base}_a${s.ruleId}`;
        if (!allowChains.has(s.ruleId)) {
          const text = ruleText(s.ruleId);
          const rule = log(logPrefix(ep.id, dir, { kind: "allow", ruleId: s.ruleId }));
          allowChains.set(s.ruleId, {
            name,
            rules: [text === undefined ? rule : `${rule} comment "${commentText(text)}"`],
          });
        }
        return `goto ${name}`;
      }
      const name = `${base}_r${s.ruleId}`;
      if (!denyChains.has(s.ruleId)) {
        const text = ruleText(s.ruleId);
        const rule = `${log(logPrefix(ep.id, dir, { kind: "rule", ruleId: s.ruleId }))} drop`;
        denyChains.set(s.ruleId, {
          name,
          rules: [text === undefined ? rule : `${rule} comment "${commentText(text)}"`],
        });
      }
      return `goto ${name}`;
    };
    const where = `endpoints[id=${ep.id}].${dir === "in" ? "ingress" : "egress"}`;
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
    for (const [kind, fields, elements, interval] of kinds) {
      // Only maps with elements exist (and only their lookups are in the chain): most endpoints
      // have no ICMP or wildcard segments, and every map costs on load and read-back.
      if (elements.length === 0) continue;
      present.add(kind);
      maps.push({
        name: `${base}_${kind}`,
        fields: [...fields],
        valueType: "verdict",
        interval,
        elements,
      });
    }
    const rules: string[] = [];
    if (dir === "out") {
      const spoof = `${log(logPrefix(ep.id, "out", { kind: "spoof" }))} drop`;
      rules.push(ep.ipv4 !== undefined ? `ip saddr != ${ep.ipv4} ${spoof}` : `meta nfproto ipv4 ${spoof}`);
      rules.push(ep.ipv6 !== undefined ? `ip6 saddr != ${ep.ipv6} ${spoof}` : `meta nfproto ipv6 ${spoof}`);
    }
    rules.push(
      "ct state established,related accept",
      `ct state invalid ${log(logPrefix(ep.id, dir, { kind: "invalid" }))} drop`,
      // Egress: the peer is the destination, whose identity only new connections need.
      ...(dir === "out" && (present.has("id") || present.has("idr") || present.has("idi"))
        ? [`jump ${MARK_DST_CHAIN}`]
        : []),
      ...lookupRules(base, present),
    );
    if (policy.enforced) rules.push(`${log(logPrefix(ep.id, dir, { kind: "default" }))} drop`);
    else if (policy.auditDefault) rules.push(log(auditPrefix(ep.id, dir, "def")));
    chains.push(
      { name: base, rules },
      ...[
        ...denyChains.values(),
        ...allowChains.values(),
        ...auditChains.values(),
        ...redirectChains.values(),
      ].sort((a, b) => (a.name < b.name ? -1 : 1)),
    );
  }
  return {
    maps,
    // Frozen: their hashes (model.ts) are then computed once, whatever reads them.
    chains: chains.map(frozenChain),
    dispatch: dispatchElements(ep),
    texts,
  };
}
