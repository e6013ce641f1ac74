/**
 * nft scripts of the layout candidates (bench/layout.ts), written directly
 * (not through compile.ts, which knows only today's layout):
 *
 *   policy "A"   per endpoint and direction 4 interval maps (id, idi, any, anyi), as today
 *   policy "A2"  the same, but only the non-empty maps (and only their lookup rules)
 *   policy "B"   shared maps per direction keyed by the endpoint's address:
 *                  out_id: ip saddr . mark . proto . port   (egress: saddr is anti-spoofed first)
 *                  in_id:  ip daddr . mark . proto . port
 *                plus out_idi/in_idi (ICMP type) and out_any/in_any(i) (identity 0)
 *   ipcache "flat"  one interval map of the flattened prefixes (today)
 *   ipcache "hash"  a hash map of the /32s plus a small interval map of the CIDR
 *                   prefixes; the CIDR map sets the mark first, the host map overrides
 *
 * nft 1.0.6 cannot key a lookup on a constant (`17 . meta mark` is refused:
 * "Can't parse symbolic invalid expressions"), so B keys on what the packet
 * carries. Every layout keeps the per-endpoint chains (anti-spoof, conntrack,
 * default drop) and one allow chain per rule (counter + NFLOG, as compile.ts).
 */
import { flattenIpcache, type IdentityInterval } from "../src/ipcache/intervals.js";
import {
  PROTO_ICMP,
  WORLD,
  type BenchEndpoint,
  type IpcacheEntry,
  type PolicyElement,
  type Workload,
} from "./layout-model.js";

export type PolicyLayout = "A" | "A2" | "B";
export type IpcacheLayout = "flat" | "hash";
export interface Candidate {
  name: string;
  policy: PolicyLayout;
  ipcache: IpcacheLayout;
}

const MASK = "0x01ffffff";
type Kind = "id" | "idi" | "any" | "anyi";
const KINDS: readonly Kind[] = ["id", "idi", "any", "anyi"];
type Dir = "in" | "out";

function kindOf(e: PolicyElement): Kind {
  const icmp = e.proto === PROTO_ICMP;
  return e.identity === 0 ? (icmp ? "anyi" : "any") : icmp ? "idi" : "id";
}

const range = (lo: number, hi: number): string => (lo === hi ? String(lo) : `${lo}-${hi}`);

/** Element key; `del` writes the last field as a range (nft 1.0.6 cannot delete `a . b . c`). */
function keyText(layout: PolicyLayout, ep: BenchEndpoint, e: PolicyElement, del = false): string {
  const last = del && e.lo === e.hi ? `${e.lo}-${e.hi}` : range(e.lo, e.hi);
  const parts = e.identity === 0 ? [String(e.proto), last] : [String(e.identity), String(e.proto), last];
  if (layout === "B") parts.unshift(ep.ipv4);
  return parts.join(" . ");
}

const allowChain = (ep: BenchEndpoint, dir: Dir, rule: number): string => `e${ep.id}_${dir}_a${rule}`;
const elementText = (layout: PolicyLayout, ep: BenchEndpoint, dir: Dir, e: PolicyElement): string =>
  `${keyText(layout, ep, e)} : goto ${allowChain(ep, dir, e.rule)}`;

function mapDecl(layout: PolicyLayout, dir: Dir, kind: Kind): string {
  const addr = dir === "out" ? "ip saddr" : "ip daddr";
  const pre = layout === "B" ? [addr] : [];
  const fields: Record<Kind, string[]> = {
    id: ["meta mark", "meta l4proto", "th dport"],
    idi: ["meta mark", "meta l4proto", "@th,0,8"],
    any: ["meta l4proto", "th dport"],
    anyi: ["meta l4proto", "@th,0,8"],
  };
  return `typeof ${[...pre, ...fields[kind]].join(" . ")} : verdict; flags interval;`;
}

function lookupRule(layout: PolicyLayout, dir: Dir, kind: Kind, map: string): string {
  const icmp = kind === "idi" || kind === "anyi";
  const guard = icmp ? "meta l4proto { 1, 58 }" : "meta l4proto != { 1, 58 }";
  const addr = layout === "B" ? [dir === "out" ? "ip saddr" : "ip daddr"] : [];
  const ident = kind === "id" || kind === "idi" ? [`meta mark & ${MASK}`] : [];
  const key = [...addr, ...ident, "meta l4proto", icmp ? "@th,0,8" : "th dport"].join(" . ");
  return `${guard} ${key} vmap @${map}`;
}

const mapName = (layout: PolicyLayout, ep: BenchEndpoint, dir: Dir, kind: Kind): string =>
  layout === "B" ? `${dir}_${kind}` : `e${ep.id}_${dir}_${kind}`;

const byKind = (els: readonly PolicyElement[], kind: Kind): PolicyElement[] =>
  els.filter((e) => kindOf(e) === kind);

/** The policy maps one endpoint's direction uses (A2: only the non-empty ones). */
export function endpointMaps(layout: PolicyLayout, ep: BenchEndpoint, dir: Dir): string[] {
  const els = dir === "in" ? ep.ingress : ep.egress;
  return KINDS.filter((k) => layout !== "A2" || byKind(els, k).length > 0).map((k) =>
    mapName(layout, ep, dir, k),
  );
}

function block(name: string, decl: string, elements: readonly string[]): string {
  const body = elements.length > 0 ? `\n\t\telements = { ${elements.join(",\n\t\t\t")} }` : "";
  return `\tmap ${name} {\n\t\t${decl}${body}\n\t}`;
}

function chain(name: string, rules: readonly string[], base?: string): string {
  return `\tchain ${name} {\n${base ? `\t\t${base}\n` : ""}${rules.map((r) => `\t\t${r}\n`).join("")}\t}`;
}

function intervalText(i: IdentityInterval): string {
  const a = (v: bigint): string => [24, 16, 8, 0].map((s) => Number((v >> BigInt(s)) & 0xffn)).join(".");
  return i.lo === i.hi ? a(i.lo) : `${a(i.lo)}-${a(i.hi)}`;
}

/** The ipcache maps' elements of a layout, keyed by map name (element text without value for diffs). */
export function ipcacheElements(
  layout: IpcacheLayout,
  ipcache: readonly IpcacheEntry[],
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const flat = (entries: readonly IpcacheEntry[]): string[] =>
    flattenIpcache(entries, WORLD).v4.map((i) => `${intervalText(i)} : ${i.identity}`);
  if (layout === "flat") out.set("ipcache4", flat(ipcache));
  else {
    const hosts = ipcache.filter((e) => e.prefix.endsWith("/32"));
    out.set("ipcache4c", flat(ipcache.filter((e) => !e.prefix.endsWith("/32"))));
    out.set(
      "ipcache4h",
      hosts.map((e) => `${e.prefix.slice(0, -3)} : ${e.identity}`),
    );
  }
  return out;
}

function ipcacheMaps(layout: IpcacheLayout, ipcache: readonly IpcacheEntry[]): string[] {
  const els = ipcacheElements(layout, ipcache);
  const maps = [...els].map(([name, e]) =>
    block(name, `type ipv4_addr : mark;${name === "ipcache4h" ? "" : " flags interval;"}`, e),
  );
  maps.push(block("ipcache6", "type ipv6_addr : mark; flags interval;", [`::/0 : ${WORLD}`]));
  return maps;
}

function ipcacheRules(layout: IpcacheLayout, field: "saddr" | "daddr"): string[] {
  if (layout === "flat")
    return [`meta mark set ip ${field} map @ipcache4`, `meta mark set ip6 ${field} map @ipcache6`];
  // The CIDR map covers every address (world elsewhere); a /32 in the host map overrides it.
  return [
    `meta mark set ip ${field} map @ipcache4c`,
    `meta mark set ip ${field} map @ipcache4h`,
    `meta mark set ip6 ${field} map @ipcache6`,
  ];
}

function endpointChains(c: Candidate, ep: BenchEndpoint): string[] {
  const out: string[] = [];
  for (const dir of ["out", "in"] as const) {
    const els = dir === "in" ? ep.ingress : ep.egress;
    const base = `e${ep.id}_${dir}`;
    const log = (what: string): string => `log group 1 prefix "mb:${ep.id}:${dir}:${what}"`;
    const rules: string[] = [];
    if (dir === "out") {
      rules.push(`ip saddr != ${ep.ipv4} ${log("spoof")} drop`, `meta nfproto ipv6 ${log("spoof")} drop`);
    }
    rules.push("ct state established,related accept", `ct state invalid ${log("invalid")} drop`);
    for (const kind of KINDS) {
      if (c.policy === "A2" && byKind(els, kind).length === 0) continue;
      rules.push(lookupRule(c.policy, dir, kind, mapName(c.policy, ep, dir, kind)));
    }
    rules.push(`${log("default")} drop`);
    out.push(chain(base, rules));
    for (const rule of [...new Set(els.map((e) => e.rule))].sort((a, b) => a - b))
      out.push(chain(allowChain(ep, dir, rule), [`counter ${log(`a${rule}`)}`]));
  }
  return out;
}

/** The whole table of a candidate, as one `nft -f` script. */
export function tableScript(c: Candidate, w: Workload, table: string): string {
  const parts: string[] = [`table inet ${table} {`];
  parts.push(...ipcacheMaps(c.ipcache, w.ipcache));
  if (c.policy === "B") {
    for (const dir of ["out", "in"] as const)
      for (const kind of KINDS) {
        const els = w.endpoints.flatMap((ep) =>
          byKind(dir === "in" ? ep.ingress : ep.egress, kind).map((e) => elementText("B", ep, dir, e)),
        );
        parts.push(block(`${dir}_${kind}`, mapDecl("B", dir, kind), els));
      }
  } else {
    for (const ep of w.endpoints)
      for (const dir of ["out", "in"] as const)
        for (const kind of KINDS) {
          const els = byKind(dir === "in" ? ep.ingress : ep.egress, kind);
          if (c.policy === "A2" && els.length === 0) continue;
          parts.push(
            block(
              mapName(c.policy, ep, dir, kind),
              mapDecl(c.policy, dir, kind),
              els.map((e) => elementText(c.policy, ep, dir, e)),
            ),
          );
        }
  }
  const dispatch = (name: string, type: string, key: (ep: BenchEndpoint) => string, dir: Dir): string =>
    block(
      name,
      `type ${type} : verdict;`,
      w.endpoints.map((ep) => `${key(ep)} : jump e${ep.id}_${dir}`),
    );
  parts.push(
    dispatch("egress_ep", "ifname", (ep) => JSON.stringify(ep.ifname), "out"),
    dispatch("ingress_ep", "ifname", (ep) => JSON.stringify(ep.ifname), "in"),
    dispatch("ingress_ep4", "ipv4_addr", (ep) => ep.ipv4, "in"),
  );
  for (const ep of w.endpoints) parts.push(...endpointChains(c, ep));
  parts.push(
    chain(
      "pre_c",
      [
        "icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 137, 143 } accept",
        ...ipcacheRules(c.ipcache, "daddr"),
        "fib daddr type local meta mark set 1",
        "iifname vmap @egress_ep",
        ...ipcacheRules(c.ipcache, "saddr"),
        "ip daddr vmap @ingress_ep4",
      ],
      "type filter hook prerouting priority -150; policy accept;",
    ),
    chain(
      "out_c",
      ["meta mark set 1", "oifname vmap @ingress_ep"],
      "type filter hook output priority -150; policy accept;",
    ),
  );
  parts.push("}");
  return parts.join("\n") + "\n";
}

/** One transaction adding (or removing) one policy element of `ep`'s ingress. */
export function policyElementScript(
  c: Candidate,
  table: string,
  ep: BenchEndpoint,
  e: PolicyElement,
  op: "add" | "delete",
): string {
  const map = mapName(c.policy, ep, "in", kindOf(e));
  const text = op === "add" ? elementText(c.policy, ep, "in", e) : keyText(c.policy, ep, e, true);
  return `${op} element inet ${table} ${map} { ${text} }\n`;
}

/**
 * One transaction taking the ipcache from `before` to `after`: the element
 * difference of each map (flat: a new /32 in a gap splits the gap's interval
 * into three; hash: one element).
 */
export function ipcacheDeltaScript(
  table: string,
  before: Map<string, string[]>,
  after: Map<string, string[]>,
): string {
  const lines: string[] = [];
  for (const [map, els] of after) {
    const old = new Set(before.get(map) ?? []);
    const now = new Set(els);
    const gone = [...old].filter((e) => !now.has(e)).map((e) => e.split(" : ")[0]);
    const added = [...now].filter((e) => !old.has(e));
    if (gone.length > 0) lines.push(`delete element inet ${table} ${map} { ${gone.join(", ")} }`);
    if (added.length > 0) lines.push(`add element inet ${table} ${map} { ${added.join(", ")} }`);
  }
  return lines.join("\n") + "\n";
}

/** One transaction removing a whole endpoint: dispatch elements, chains, and its maps (A) or elements (B). */
export function removeEndpointScript(c: Candidate, table: string, ep: BenchEndpoint): string {
  const t = `inet ${table}`;
  const lines = [
    `delete element ${t} egress_ep { ${JSON.stringify(ep.ifname)} }`,
    `delete element ${t} ingress_ep { ${JSON.stringify(ep.ifname)} }`,
    `delete element ${t} ingress_ep4 { ${ep.ipv4} }`,
    `delete chain ${t} e${ep.id}_out`,
    `delete chain ${t} e${ep.id}_in`,
  ];
  for (const dir of ["out", "in"] as const) {
    const els = dir === "in" ? ep.ingress : ep.egress;
    if (c.policy === "B") {
      for (const kind of KINDS) {
        const keys = byKind(els, kind).map((e) => keyText("B", ep, e, true));
        if (keys.length > 0) lines.push(`delete element ${t} ${dir}_${kind} { ${keys.join(", ")} }`);
      }
    } else for (const m of endpointMaps(c.policy, ep, dir)) lines.push(`delete map ${t} ${m}`);
  }
  for (const dir of ["out", "in"] as const) {
    const els = dir === "in" ? ep.ingress : ep.egress;
    for (const rule of new Set(els.map((e) => e.rule)))
      lines.push(`delete chain ${t} ${allowChain(ep, dir, rule)}`);
  }
  return lines.join("\n") + "\n";
}

/** Names of the ipcache maps of a layout (what a reader of the ipcache lists). */
export const ipcacheMapNames = (layout: IpcacheLayout): string[] =>
  layout === "flat" ? ["ipcache4"] : ["ipcache4c", "ipcache4h"];

/** Counts of what a table holds (maps, elements, chains), from the workload. */
export function tableStats(
  c: Candidate,
  w: Workload,
): { maps: number; policyElements: number; chains: number } {
  let maps = 0;
  let elements = 0;
  let chains = 2;
  for (const ep of w.endpoints)
    for (const dir of ["out", "in"] as const) {
      const els = dir === "in" ? ep.ingress : ep.egress;
      elements += els.length;
      if (c.policy !== "B") maps += endpointMaps(c.policy, ep, dir).length;
      chains += 1 + new Set(els.map((e) => e.rule)).size;
    }
  if (c.policy === "B") maps += 8;
  maps += ipcacheMapNames(c.ipcache).length + 1 + 3;
  return { maps, policyElements: elements, chains };
}
