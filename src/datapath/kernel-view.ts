/**
 * What the kernel should hold, as text a worker thread can compare with a
 * read-back of the table (verify-thread.ts), so that the periodic check
 * neither parses nor compares the whole table on the agent's event loop.
 *
 *   Applied (incremental.ts: what the kernel accepted last)
 *     --expectedView(), in slices (the loop turns between them)--> KernelView: chunks of lines
 *        M <map> <signature> <field kinds>     a map of ours
 *        E <map> <canon> <value>               one of its elements (D: a dispatch element)
 *        F                                     every host follows (the worker forgets the ones it holds)
 *        H <map> <ip> <identity>               a host element (the worker makes the element)
 *        h <map> <ip> <identity> | x <map> <ip>  a host changed | gone since the last view
 *        C <chain> <hash> <rules>              a chain of ours
 *     --postMessage (an array of strings: copied, not walked)--> worker: nft -j list table,
 *        parseTable, compareView() --> same | the first difference
 *
 * An endpoint's text is made once per compiled part (parts are replaced, not
 * changed, when an endpoint changes), and the hosts (tens of thousands) are sent
 * whole once, then as the addresses changed since the last view: the worker keeps
 * them (WorkerHosts). So a check costs the main thread the endpoints and the
 * addresses that changed since the last one, not a pass over the table. compareView() finds a difference
 * exactly when plan() would write something (a missing or extra map or chain, a
 * changed map declaration, an element added, removed or with another value, a
 * chain with another content hash or rule count, the stamp): the Reconciler
 * then runs its whole-table compare on the main thread, which plans the repair
 * by delta (rare: a hand edit or a bug). Pure: no I/O.
 */
import type { EndpointParts } from "./compile-endpoint.js";
import { DISPATCH_MAPS, type DispatchPart } from "./dispatch.js";
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

const DISPATCH: Record<string, DispatchPart> = Object.fromEntries(DISPATCH_MAPS.map((d) => [d.name, d.part]));

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
 * `hostChanges`: only these addresses (read from applied.hosts.copy: what the
 * kernel accepted) go in the view, as h/x lines, for a worker that holds the
 * hosts of an earlier view; absent: every host, as H lines.
 */
export async function expectedView(
  applied: Applied,
  yieldNow: () => Promise<void>,
  stale: () => boolean,
  hostChanges?: Iterable<string>,
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
  const hostMap = (ip: string): string => (ip.includes(":") ? HOST_MAPS[6] : HOST_MAPS[4]);
  if (hostChanges) {
    for (const ip of hostChanges) {
      const id = applied.hosts.copy.get(ip);
      lines.push(id === undefined ? `x ${hostMap(ip)} ${ip}` : `h ${hostMap(ip)} ${ip} ${id}`);
      if (lines.length >= SLICE && !(await flush())) return undefined;
    }
  } else {
    lines.push("F");
    for (const [ip, id] of applied.hosts.copy) {
      lines.push(`H ${hostMap(ip)} ${ip} ${id}`);
      if (lines.length >= SLICE && !(await flush())) return undefined;
    }
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
  /** "canon value" lines. */
  want: string[];
}

/**
 * The hosts of the views a worker was sent, by map and address: replaced by a
 * view with H lines, changed by one with h/x lines. One per worker; a new
 * worker starts empty and must be sent every host.
 */
export class WorkerHosts {
  readonly maps = new Map<string, Map<string, number>>();
  map(name: string): Map<string, number> {
    let m = this.maps.get(name);
    if (!m) this.maps.set(name, (m = new Map()));
    return m;
  }
}

/** A view read by the worker (readView), to compare once the table is read. */
export interface ReadView {
  readonly maps: Map<string, WantMap>;
  readonly chains: Map<string, string>;
}

/**
 * The view's lines, by map and chain; its host lines update `hosts` (at once, when the
 * worker receives the view: the sender counts on it even when the read that follows fails).
 */
export function readView(view: KernelView, hosts: WorkerHosts): ReadView {
  const maps = new Map<string, WantMap>();
  const chains = new Map<string, string>();
  const map = (name: string): WantMap => {
    let m = maps.get(name);
    if (!m) maps.set(name, (m = { signature: "", fields: [], want: [] }));
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
      else if (l[0] === "H" || l[0] === "h") {
        const sp = rest.indexOf(" ");
        hosts.map(name).set(rest.slice(0, sp), Number(rest.slice(sp + 1)));
      } else if (l === "F") hosts.maps.clear();
      else if (l[0] === "x") hosts.map(name).delete(rest);
      else if (l[0] === "C") chains.set(name, rest);
    }
  }
  return { maps, chains };
}

/**
 * Compares a `nft -j list table` document with the view (and the hosts the
 * worker holds, updated by the view's host lines first). Returns undefined when
 * the kernel holds exactly the view, else the first difference found (for the log).
 */
export function compareView(
  view: KernelView | ReadView,
  doc: unknown,
  hosts: WorkerHosts = new WorkerHosts(),
): string | undefined {
  const { maps, chains } = Array.isArray(view) ? readView(view as KernelView, hosts) : (view as ReadView);
  if (doc === undefined) return "the table is missing";
  const actual = parseTable(doc);
  for (const [name, m] of maps) {
    const a = actual.maps.get(name);
    if (!a) return `map ${name} is missing`;
    if (a.signature !== m.signature) return `map ${name} is declared ${a.signature}, not ${m.signature}`;
    const hs = hosts.maps.get(name);
    const count = m.want.length + (hs?.size ?? 0);
    if (a.rawElements.length !== count)
      return `map ${name} holds ${a.rawElements.length} elements, not ${count}`;
    const decl: NftMap = { name, fields: m.fields, valueType: "mark", interval: false, elements: [] };
    const have = new Set(decodeElements(decl, a.rawElements).map((e) => `${elementCanon(e)} ${e.value}`));
    for (const w of m.want) if (!have.has(w)) return `map ${name} lacks element ${w}`;
    for (const [ip, id] of hs ?? []) {
      const e = hostElement(ip, id).element;
      if (!have.has(`${elementCanon(e)} ${e.value}`)) return `map ${name} lacks host ${ip} ${id}`;
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
