/**
 * LbState -> the node's load-balancing table (`inet <table>_lb`), as a whole
 * script and as element deltas. Pure.
 *
 *   prerouting -160 / output -160 (before the policy hook, -150), new connections only:
 *     classify: frontend with no backend -> reject (TCP reset, else ICMP port unreachable)
 *               traffic policy Local, no backend on this node -> drop (kube-proxy's "no local endpoints")
 *               lb-l7 frontend           -> ct mark |= CT_SERVICE | CT_REDIRECT_L7: no DNAT here; the
 *                                           membrane table's nat chain sends it to the L7 proxy, which
 *                                           picks a backend per HTTP/2 request (proxy/lb/)
 *               frontend                 -> ct mark |= CT_SERVICE (policy waits for the DNAT)
 *   prerouting dstnat / output -100 (nat), connections with CT_SERVICE:
 *     ip daddr . l4proto . th dport vmap @nat4      (NodePort: fib daddr local, l4proto . dport @npnat)
 *       -> goto n<N>:    mark = numgen random mod N; dnat ip to daddr . l4proto . dport . mark map @be4
 *       -> goto a<N>t<T> (sessionAffinity ClientIP, timeout T):
 *                        mark = @aff4[client . daddr . l4proto . dport] (the client's slot), refreshed,
 *                        else a random slot, remembered for T seconds; then the same DNAT
 *               LoadBalancer address (ext4), client not this node's pod -> CT_SERVICE | CT_NODEPORT
 *   postrouting srcnat: a NodePort connection (CT_NODEPORT) to a backend outside the node's pod
 *     CIDRs is masqueraded to the node's address, so that the reply comes back through this node.
 *   The membrane table then judges the connection on its backend (compile-lb-policy.ts).
 *   The packet mark is scratch here: the policy hook after the DNAT sets it anew.
 *
 * Every service's state is elements: its frontend (nat4: which chain, i.e. how many
 * backends and which affinity timeout), its backends by slot (be4). Adding, removing or
 * draining a backend is an element delta of one transaction; chains exist per distinct
 * backend count and timeout (shared by every service with that count), so a change adds a
 * chain only the first time a count is seen. A terminating backend leaves the slots: new
 * connections go elsewhere, its conntrack entries keep the existing ones. Slots are
 * stable (a backend keeps its slot while it stays, a leaving one's slot takes another),
 * so affinity, which remembers the slot, keeps a client on its backend across changes
 * unless that backend left (or its slot is beyond the new count: the client is re-pinned).
 * Why the slot and not the backend: nft 1.0.6 cannot put `ct original proto-dst` in a
 * concatenation, so the affinity cannot be written after the DNAT, where the backend is known.
 *
 * Consistent hashing (Maglev): nftables can do it as elements. The hash is `jhash` of the
 * 4-tuple (`mod M`, a fixed seed, so every node picks the same backend for a flow) and
 * the Maglev lookup table is M elements per frontend in be4, filled by Maglev's
 * permutation (lb/maglev.ts): a backend change rewrites only about M/N slots.
 * The price is M elements per frontend (M = 251: 2.5 M elements at 10,000 services),
 * hence an option (the `membrane.io/lb-algorithm: maglev` annotation on the Service), not the default.
 *
 * IPv6: the same, with the family's own sets and chains (lb-chains.ts); a dual-stack service is
 * one frontend per family; an lb-l7 frontend of either family is marked in l7front4/l7front6.
 */
import { addrString, parseAddr } from "../labels/cidr.js";
import { AFFINITY_MAPS, choiceChain, fixedChains, LB_SETS, MAGLEV_M, setsOf } from "./lb-chains.js";
import type { LbFrontend, LbState } from "./lb-types.js";
import { invalid } from "./compile-error.js";

export { AFFINITY_MAPS, fixedChains, LB_SETS, MAGLEV_M } from "./lb-chains.js";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Dotted-quad IPv4 (a regular expression: this runs for every backend of every service). */
export const isIpv4 = (s: string): boolean => IPV4.test(s);
/**
 * An IPv6 address in its one canonical text (RFC 5952, as lb/ writes it): element keys are compared
 * as text, so "fd00:0::1" and "fd00::1" must not both occur. No zone, no IPv4-mapped form.
 */
export function isIpv6(s: string): boolean {
  if (!s.includes(":") || s.includes(".") || s.includes("%")) return false;
  const a = parseAddr(s);
  return a !== undefined && a.family === 6 && addrString(6, a.value) === s;
}

/** The canonical text of an address (IPv6: RFC 5952), or undefined when it is not one. */
export function canonicalAddr(s: string): string | undefined {
  const a = parseAddr(s);
  return a && addrString(a.family, a.value);
}

/** The address family of a frontend: its address's, or `family` for a NodePort (absent: 4). */
export const familyOf = (f: Pick<LbFrontend, "ip" | "family">): 4 | 6 =>
  f.ip !== undefined ? (isIpv4(f.ip) ? 4 : 6) : (f.family ?? 4);

const PROTO_NAME: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

/** One map's or set's elements: key text -> value text ("" for a set). */
export type LbElements = Map<string, Map<string, string>>;

export interface CompiledLb {
  /** Chains the verdict elements go to (named by backend count / timeout), with their rules. */
  chains: Map<string, string[]>;
  elements: LbElements;
}

/** The key of a frontend's elements in its family's sets: "10.96.0.1 . tcp . 80", "tcp . 30080". */
export function elementKey(f: Pick<LbFrontend, "ip" | "proto" | "port">): string {
  const p = PROTO_NAME[f.proto] ?? String(f.proto);
  return f.ip === undefined ? `${p} . ${f.port}` : `${f.ip} . ${p} . ${f.port}`;
}

/** Which frontend it is, across families: the element key, "v6 . " before an IPv6 NodePort's. */
export function frontendKey(f: Pick<LbFrontend, "ip" | "proto" | "port" | "family">): string {
  return f.ip === undefined && f.family === 6 ? `v6 . ${elementKey(f)}` : elementKey(f);
}

/** Checks a frontend; `p` names it in errors ("frontends[3]"). */
function check(f: LbFrontend, p: string): void {
  if (f.ip !== undefined && !isIpv4(f.ip) && !isIpv6(f.ip))
    throw invalid(`${p}.ip`, `"${f.ip}" is not an IPv4 or IPv6 address`);
  if (f.family !== undefined && (f.ip !== undefined || (f.family !== 4 && f.family !== 6)))
    throw invalid(`${p}.family`, "is only for a NodePort (no address), 4 or 6");
  const family = familyOf(f);
  const sameFamily = family === 4 ? isIpv4 : isIpv6;
  if (PROTO_NAME[f.proto] === undefined) throw invalid(`${p}.proto`, `${f.proto} is not TCP, UDP or SCTP`);
  const port = (n: number): boolean => Number.isInteger(n) && n > 0 && n < 65536;
  if (!port(f.port)) throw invalid(`${p}.port`, `${f.port} is not a port`);
  f.backends.forEach((b, i) => {
    if (!sameFamily(b.ip))
      throw invalid(
        `${p}.backends[${i}].ip`,
        `"${b.ip}" is not an IPv${family} address (the frontend's family)`,
      );
    if (!port(b.port)) throw invalid(`${p}.backends[${i}].port`, `${b.port} is not a port`);
  });
  if (f.slots && (f.slots.length !== MAGLEV_M || f.slots.some((b) => !(b >= 0 && b < f.backends.length))))
    throw invalid(`${p}.slots`, `must be ${MAGLEV_M} indexes into backends`);
  if (f.noLocal === true && f.backends.length > 0)
    throw invalid(`${p}.noLocal`, "is only for a frontend without a backend on this node");
  if (f.external === true && f.ip === undefined)
    throw invalid(`${p}.external`, "is only for a LoadBalancer address (a NodePort is external already)");
  if (f.l7 === true && (f.ip === undefined || f.proto !== 6))
    throw invalid(`${p}.l7`, "per-request balancing needs a TCP frontend with an address");
  if (f.affinitySeconds !== undefined && !(Number.isInteger(f.affinitySeconds) && f.affinitySeconds > 0))
    throw invalid(`${p}.affinitySeconds`, `${f.affinitySeconds} is not a whole number of seconds above 0`);
}

/** One frontend's elements: [map or set, key, value ("" in a set)], and the chain its verdict goes to. */
export interface CompiledFrontend {
  key: string;
  chain?: { name: string; rules: string[] };
  elements: [string, string, string][];
}

/**
 * One frontend's elements; `p` names it in errors ("frontends[3]"); `previous` answers what a
 * map held before (stable slots: a backend keeps its slot).
 */
export function compileFrontend(
  f: LbFrontend,
  p: string,
  previous?: (set: string, key: string) => string | undefined,
): CompiledFrontend {
  check(f, p);
  const key = frontendKey(f);
  const ek = elementKey(f);
  const node = f.ip === undefined;
  const family = familyOf(f);
  const sets = setsOf(family, node);
  const elements: [string, string, string][] = [[sets.front, ek, ""]];
  if (f.backends.length === 0) {
    elements.push([f.noLocal === true ? sets.drop : sets.empty, ek, ""]);
    return { key, elements };
  }
  // lb-l7: the proxy chooses the backend per request; the kernel only marks the connection.
  if (f.l7 === true) return { key, elements: [[`l7front${family}`, ek, ""]] };
  const slots = f.slots;
  const chain = choiceChain(f, family, slots !== undefined);
  elements.push([sets.nat, ek, `goto ${chain.name}`]);
  if (f.external === true) elements.push([`ext${family}`, ek, ""]);
  const be = sets.be;
  const values = f.backends.map((b) => `${b.ip} . ${b.port}`);
  const was = previous && ((s: number): string | undefined => previous(be, `${ek} . ${s}`));
  const order = slots ? slots.map((b) => values[b] as string) : stableSlots(values, was);
  order.forEach((v, slot) => elements.push([be, `${ek} . ${slot}`, v]));
  return { key, chain, elements };
}

/** The whole desired content of the LB table's maps, and the chains they go to. */
export function compileLb(state: LbState, previous?: CompiledLb): CompiledLb {
  const elements: LbElements = new Map(LB_SETS.map((s) => [s.name, new Map<string, string>()]));
  const chains = new Map<string, string[]>();
  const seen = new Set<string>();
  const prev = previous && ((set: string, key: string) => previous.elements.get(set)?.get(key));
  state.frontends.forEach((f, i) => {
    const c = compileFrontend(f, `frontends[${i}]`, prev);
    if (seen.has(c.key)) throw invalid(`frontends[${i}]`, `${c.key} is used twice`);
    seen.add(c.key);
    if (c.chain) chains.set(c.chain.name, c.chain.rules);
    for (const [set, k, v] of c.elements) (elements.get(set) as Map<string, string>).set(k, v);
  });
  return { chains, elements };
}

/**
 * Backends in slot order: a backend that held slot s before (and s still exists) keeps it;
 * the others fill the free slots in their given order.
 */
function stableSlots(values: string[], was: ((slot: number) => string | undefined) | undefined): string[] {
  const out: (string | undefined)[] = new Array<string | undefined>(values.length).fill(undefined);
  const placed = new Set<string>();
  if (was) {
    const wanted = new Set(values);
    for (let s = 0; s < values.length; s++) {
      const v = was(s);
      if (v !== undefined && wanted.has(v) && !placed.has(v)) {
        out[s] = v;
        placed.add(v);
      }
    }
  }
  const rest = values.filter((v) => !placed.has(v));
  return out.map((v) => v ?? (rest.shift() as string));
}

const elem = (k: string, v: string): string => (v === "" ? k : `${k} : ${v}`);

/** The script that creates the table from nothing (an existing one is replaced whole). */
export function lbTableScript(
  table: string,
  c: CompiledLb,
  localCidrs: readonly string[] = [],
  logGroup?: number,
): string {
  const out = [`table inet ${table} {}`, `delete table inet ${table}`, `table inet ${table} {`];
  for (const s of LB_SETS) out.push(`  ${s.decl.includes(":") ? "map" : "set"} ${s.name} { ${s.decl} }`);
  for (const a of AFFINITY_MAPS) out.push(`  map ${a.name} { ${a.decl} }`);
  for (const [name, rules] of c.chains) out.push(`  chain ${name} {`, ...rules.map((r) => `    ${r}`), "  }");
  for (const ch of fixedChains(localCidrs, logGroup)) {
    out.push(`  chain ${ch.name} {`);
    if (ch.base) out.push(`    ${ch.base}`);
    out.push(...ch.rules.map((r) => `    ${r}`), "  }");
  }
  out.push("}");
  for (const s of LB_SETS) {
    const els = [...(c.elements.get(s.name) ?? new Map<string, string>())].map(([k, v]) => elem(k, v));
    for (let i = 0; i < els.length; i += 2000)
      out.push(`add element inet ${table} ${s.name} { ${els.slice(i, i + 2000).join(", ")} }`);
  }
  return out.join("\n") + "\n";
}

export interface LbDelta {
  script: string;
  /** Element additions + deletions (0: nothing to do). */
  ops: number;
}

/**
 * The transaction from `was` to `now`: new chains, then element deletions and additions
 * (a changed value is a deletion and an addition), then chains nothing refers to any more.
 */
export function lbDelta(table: string, was: CompiledLb, now: CompiledLb): LbDelta {
  const out: string[] = [];
  let ops = 0;
  for (const [name, rules] of now.chains) {
    if (was.chains.has(name)) continue;
    out.push(`add chain inet ${table} ${name}`, ...rules.map((r) => `add rule inet ${table} ${name} ${r}`));
  }
  const dels: string[] = [];
  const adds: string[] = [];
  for (const s of LB_SETS) {
    const a = was.elements.get(s.name) ?? new Map<string, string>();
    const b = now.elements.get(s.name) ?? new Map<string, string>();
    const del: string[] = [];
    const add: string[] = [];
    for (const [k, v] of a) {
      const nv = b.get(k);
      if (nv === v) continue;
      del.push(k);
    }
    for (const [k, v] of b) if (a.get(k) !== v) add.push(elem(k, v));
    if (del.length) dels.push(`delete element inet ${table} ${s.name} { ${del.join(", ")} }`);
    if (add.length) adds.push(`add element inet ${table} ${s.name} { ${add.join(", ")} }`);
    ops += del.length + add.length;
  }
  out.push(...dels, ...adds);
  // Flush every chain that goes before deleting any (a<N> goes to n<N>).
  const gone = [...was.chains.keys()].filter((name) => !now.chains.has(name));
  for (const name of gone) out.push(`flush chain inet ${table} ${name}`);
  for (const name of gone) out.push(`delete chain inet ${table} ${name}`);
  return { script: out.length ? out.join("\n") + "\n" : "", ops };
}
