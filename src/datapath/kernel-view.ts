/**
 * What the kernel should hold, as text a worker thread can compare with a
 * read-back of the table (verify-thread.ts), so that the periodic check
 * neither parses nor compares the whole table on the agent's event loop.
 *
 *   Applied (incremental.ts: what the kernel accepted last)
 *     --expectedView(), in slices (the loop turns between them)--> KernelView: chunks of lines
 *        M <map> <signature> <field kinds>     a map of ours
 *        E <map> <canon> <value>               one of its elements (D: a dispatch element)
 *        H <map> <ip> <identity>               a host element (the worker makes the element)
 *        C <chain> <hash> <rules>              a chain of ours
 *     --postMessage (an array of strings: copied, not walked)--> worker: nft -j list table,
 *        parseTable, compareView() --> same | the first difference
 *
 * An endpoint's text is made once per compiled part (parts are replaced, not
 * changed, when an endpoint changes), so a check costs the host lines and the
 * endpoints that changed since the last one. compareView() finds a difference
 * exactly when plan() would write something (a missing or extra map or chain, a
 * changed map declaration, an element added, removed or with another value, a
 * chain with another content hash or rule count, the stamp): the Reconciler
 * then runs its whole-table compare on the main thread, which plans the repair
 * by delta (rare: a hand edit or a bug). Pure: no I/O.
 */
import type { EndpointParts } from "./compile-endpoint.js";
import { hostElement, HOST_MAPS } from "./compile.js";
import type { Applied } from "./incremental.js";
import {
  chainHash,
  elementCanon,
  mapSignature,
  type FieldKind,
  type NftChain,
  type NftElement,
  type NftMap,
} from "./model.js";
import { decodeElements, parseTable } from "./readback.js";
import { stampMap, STAMP_MAP } from "./stamp.js";

/** Chunks of view lines (see the picture above), in no particular order. */
export type KernelView = readonly string[];

const DISPATCH: Record<string, "egress" | "ingress" | "ingress4" | "ingress6"> = {
  egress_ep: "egress",
  ingress_ep: "ingress",
  ingress_ep4: "ingress4",
  ingress_ep6: "ingress6",
};

/** Items between two turns of the event loop while a view is built. */
const SLICE = 5000;

const elementLine = (tag: string, map: string, e: NftElement): string =>
  `${tag} ${map} ${elementCanon(e)} ${e.value}`;
const mapLine = (m: NftMap): string => `M ${m.name} ${mapSignature(m)} ${m.fields.join(",")}`;
const chainLine = (c: NftChain): string => `C ${c.name} ${chainHash(c)} ${c.rules.length}`;

/** An endpoint part's or a policy group's lines: made once per object (a change makes a new one). */
const partTexts = new WeakMap<object, string>();

function partText(part: {
  readonly maps?: readonly NftMap[];
  readonly chains: readonly NftChain[];
  readonly dispatch?: EndpointParts["dispatch"];
}): string {
  let t = partTexts.get(part);
  if (t !== undefined) return t;
  const out: string[] = [];
  for (const m of part.maps ?? []) {
    out.push(mapLine(m));
    for (const e of m.elements) out.push(elementLine("E", m.name, e));
  }
  for (const c of part.chains) out.push(chainLine(c));
  for (const [name, dir] of Object.entries(DISPATCH)) {
    const e = part.dispatch?.[dir];
    if (e) out.push(elementLine("D", name, e));
  }
  t = out.join("\n");
  partTexts.set(part, t);
  return t;
}

/**
 * The view of `applied`. `yieldNow` is awaited every few thousand items (the
 * caller lets the event loop turn); `stale()` is checked after each: when the
 * applied state moved on meanwhile, building stops and undefined comes back.
 */
export async function expectedView(
  applied: Applied,
  yieldNow: () => Promise<void>,
  stale: () => boolean,
): Promise<KernelView | undefined> {
  const chunks: string[] = [];
  const global: string[] = [];
  for (const m of applied.global.maps) {
    global.push(mapLine(m));
    if (m.name === STAMP_MAP)
      for (const e of stampMap(applied.digest.total).elements) global.push(elementLine("E", m.name, e));
    // Host and dispatch maps: their elements come from the hosts and the parts.
    else if (DISPATCH[m.name] === undefined && m.name !== HOST_MAPS[4] && m.name !== HOST_MAPS[6])
      for (const e of m.elements) global.push(elementLine("E", m.name, e));
  }
  for (const c of applied.global.chains) global.push(chainLine(c));
  chunks.push(global.join("\n"));
  let lines: string[] = [];
  const flush = async (): Promise<boolean> => {
    chunks.push(lines.join("\n"));
    lines = [];
    await yieldNow();
    return !stale();
  };
  for (const [ip, id] of applied.hosts.copy) {
    lines.push(`H ${ip.includes(":") ? HOST_MAPS[6] : HOST_MAPS[4]} ${ip} ${id}`);
    if (lines.length >= SLICE && !(await flush())) return undefined;
  }
  if (!(await flush())) return undefined;
  let n = 0;
  for (const g of applied.groups.values()) chunks.push(partText(g));
  for (const { part } of applied.parts.values()) {
    chunks.push(partText(part));
    if (++n % (SLICE / 20) === 0) {
      await yieldNow();
      if (stale()) return undefined;
    }
  }
  return chunks;
}

interface WantMap {
  signature: string;
  fields: FieldKind[];
  /** "canon value" lines; host elements as "ip identity" until compared. */
  want: string[];
  hosts: string[];
}

/** The view's lines, by map and chain. */
function parseView(view: KernelView): { maps: Map<string, WantMap>; chains: Map<string, string> } {
  const maps = new Map<string, WantMap>();
  const chains = new Map<string, string>();
  const map = (name: string): WantMap => {
    let m = maps.get(name);
    if (!m) maps.set(name, (m = { signature: "", fields: [], want: [], hosts: [] }));
    return m;
  };
  for (const chunk of view) {
    for (const l of chunk === "" ? [] : chunk.split("\n")) {
      const sp1 = l.indexOf(" ", 2);
      const name = l.slice(2, sp1);
      const rest = l.slice(sp1 + 1);
      if (l[0] === "M") {
        const [sig, fields] = rest.split(" ");
        const m = map(name);
        m.signature = sig ?? "";
        m.fields = (fields ?? "").split(",") as FieldKind[];
      } else if (l[0] === "E" || l[0] === "D") map(name).want.push(rest);
      else if (l[0] === "H") map(name).hosts.push(rest);
      else if (l[0] === "C") chains.set(name, rest);
    }
  }
  return { maps, chains };
}

/**
 * Compares a `nft -j list table` document with the view. Returns undefined when
 * the kernel holds exactly the view, else the first difference found (for the log).
 */
export function compareView(view: KernelView, doc: unknown): string | undefined {
  if (doc === undefined) return "the table is missing";
  const actual = parseTable(doc);
  const { maps, chains } = parseView(view);
  for (const [name, m] of maps) {
    const a = actual.maps.get(name);
    if (!a) return `map ${name} is missing`;
    if (a.signature !== m.signature) return `map ${name} is declared ${a.signature}, not ${m.signature}`;
    const count = m.want.length + m.hosts.length;
    if (a.rawElements.length !== count)
      return `map ${name} holds ${a.rawElements.length} elements, not ${count}`;
    const decl: NftMap = { name, fields: m.fields, valueType: "mark", interval: false, elements: [] };
    const have = new Set(decodeElements(decl, a.rawElements).map((e) => `${elementCanon(e)} ${e.value}`));
    for (const w of m.want) if (!have.has(w)) return `map ${name} lacks element ${w}`;
    for (const h of m.hosts) {
      const [ip, id] = h.split(" ");
      const e = hostElement(ip ?? "", Number(id)).element;
      if (!have.has(`${elementCanon(e)} ${e.value}`)) return `map ${name} lacks host ${h}`;
    }
  }
  if (actual.maps.size !== maps.size)
    return `map ${[...actual.maps.keys()].find((n) => !maps.has(n)) ?? "?"} is not ours`;
  for (const [name, want] of chains) {
    const a = actual.chains.get(name);
    if (!a) return `chain ${name} is missing`;
    if (`${a.hash} ${a.rules}` !== want) return `chain ${name} was changed`;
  }
  if (actual.chains.size !== chains.size)
    return `chain ${[...actual.chains.keys()].find((n) => !chains.has(n)) ?? "?"} is not ours`;
  return undefined;
}
