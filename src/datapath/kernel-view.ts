/**
 * What the kernel should hold, in a compact form a worker thread can compare
 * with a read-back of the table (verify-thread.ts), so that the periodic check
 * never parses or compares the whole table on the agent's event loop.
 *
 *   Applied (incremental.ts: what the kernel accepted last)
 *     --expectedView(), in slices (the loop turns between them)--> KernelView
 *        maps: name, signature, field kinds, elements as "canon value" lines (hosts: "ip id")
 *        chains: "name hash rules" lines
 *     --postMessage (strings: copied, not walked)--> worker: nft -j list table, parseTable,
 *        compareView() --> same | the first difference
 *
 * compareView() finds a difference exactly when plan() would write something
 * (a missing or extra map or chain, a changed map declaration, an element
 * added, removed or with another value, a chain with another content hash or
 * rule count, the stamp): the Reconciler then runs its whole-table verify on the
 * main thread, which plans the repair by delta (rare: drift is a hand edit or
 * a bug). Pure: no I/O.
 */
import { hostElement, HOST_MAPS } from "./compile.js";
import {
  chainHash,
  elementCanon,
  mapSignature,
  type FieldKind,
  type NftElement,
  type NftMap,
} from "./model.js";
import { decodeElements, parseTable } from "./readback.js";
import { stampMap, STAMP_MAP } from "./stamp.js";
import type { Applied } from "./incremental.js";

export interface ViewMap {
  readonly name: string;
  readonly signature: string;
  readonly fields: readonly FieldKind[];
  /** "canon value" per element, one a line; for the host maps "ip identity" (the worker makes the element). */
  readonly lines: string;
  readonly hostLines: boolean;
}

export interface KernelView {
  readonly maps: readonly ViewMap[];
  /** "name hash rules", one chain a line. */
  readonly chains: string;
}

const DISPATCH: Record<string, "egress" | "ingress" | "ingress4" | "ingress6"> = {
  egress_ep: "egress",
  ingress_ep: "ingress",
  ingress_ep4: "ingress4",
  ingress_ep6: "ingress6",
};

/** Work done between two turns of the event loop while building a view. */
const SLICE = 2000;

const line = (e: NftElement): string => `${elementCanon(e)} ${e.value}`;

/**
 * The view of `applied`. `yieldNow` is awaited every few thousand items (the
 * caller lets the event loop turn); `stale()` is checked after each: when it
 * says the applied state moved on, building stops and undefined comes back.
 */
export async function expectedView(
  applied: Applied,
  yieldNow: () => Promise<void>,
  stale: () => boolean,
): Promise<KernelView | undefined> {
  let work = 0;
  const step = async (n: number): Promise<boolean> => {
    work += n;
    if (work < SLICE) return true;
    work = 0;
    await yieldNow();
    return !stale();
  };
  const maps: ViewMap[] = [];
  const chains: string[] = [];
  const hostIps: Record<string, string[]> = { [HOST_MAPS[4]]: [], [HOST_MAPS[6]]: [] };
  for (const [ip, id] of applied.hosts.copy) {
    const fam = ip.includes(":") ? HOST_MAPS[6] : HOST_MAPS[4];
    hostIps[fam]?.push(`${ip} ${id}`);
    if (!(await step(1))) return undefined;
  }
  const parts = [...applied.parts.values()].map((p) => p.part);
  for (const m of applied.global.maps) {
    let lines: string[];
    const hosts = hostIps[m.name];
    const dispatch = DISPATCH[m.name];
    if (hosts) lines = hosts;
    else if (m.name === STAMP_MAP) lines = stampMap(applied.digest.total).elements.map(line);
    else if (dispatch) {
      lines = [];
      for (const p of parts) {
        const e = p.dispatch[dispatch];
        if (e) lines.push(line(e));
      }
    } else lines = m.elements.map(line);
    maps.push(viewMap(m, lines, hosts !== undefined));
    if (!(await step(lines.length))) return undefined;
  }
  for (const c of applied.global.chains) chains.push(`${c.name} ${chainHash(c)} ${c.rules.length}`);
  for (const p of parts) {
    for (const m of p.maps) maps.push(viewMap(m, m.elements.map(line), false));
    for (const c of p.chains) chains.push(`${c.name} ${chainHash(c)} ${c.rules.length}`);
    if (!(await step(10 + p.maps.length))) return undefined;
  }
  return { maps, chains: chains.join("\n") };
}

function viewMap(m: NftMap, lines: readonly string[], hostLines: boolean): ViewMap {
  return { name: m.name, signature: mapSignature(m), fields: m.fields, lines: lines.join("\n"), hostLines };
}

const split = (s: string): string[] => (s === "" ? [] : s.split("\n"));

/** The element line of a host map's "ip identity" line (the same check as every host-map writer). */
function hostLine(l: string): string {
  const [ip, id] = l.split(" ");
  return line(hostElement(ip ?? "", Number(id)).element);
}

/**
 * Compares a `nft -j list table` document with the view. Returns undefined when
 * the kernel holds exactly the view, else the first difference found (for the log).
 */
export function compareView(view: KernelView, doc: unknown): string | undefined {
  if (doc === undefined) return "the table is missing";
  const actual = parseTable(doc);
  for (const m of view.maps) {
    const a = actual.maps.get(m.name);
    if (!a) return `map ${m.name} is missing`;
    if (a.signature !== m.signature) return `map ${m.name} is declared ${a.signature}, not ${m.signature}`;
    const want = split(m.lines);
    if (a.rawElements.length !== want.length)
      return `map ${m.name} holds ${a.rawElements.length} elements, not ${want.length}`;
    const decl: NftMap = {
      name: m.name,
      fields: [...m.fields],
      valueType: "mark",
      interval: false,
      elements: [],
    };
    const have = new Set(decodeElements(decl, a.rawElements).map(line));
    for (const l of want) {
      const w = m.hostLines ? hostLine(l) : l;
      if (!have.has(w)) return `map ${m.name} lacks element ${w}`;
    }
  }
  if (actual.maps.size !== view.maps.length) {
    const names = new Set(view.maps.map((m) => m.name));
    return `map ${[...actual.maps.keys()].find((n) => !names.has(n)) ?? "?"} is not ours`;
  }
  const want = split(view.chains);
  for (const l of want) {
    const [name, hash, rules] = l.split(" ");
    const a = actual.chains.get(name ?? "");
    if (!a) return `chain ${name} is missing`;
    if (a.hash !== hash || String(a.rules) !== rules) return `chain ${name} was changed`;
  }
  if (actual.chains.size !== want.length) {
    const names = new Set(want.map((l) => l.split(" ")[0]));
    return `chain ${[...actual.chains.keys()].find((n) => !names.has(n)) ?? "?"} is not ours`;
  }
  return undefined;
}
