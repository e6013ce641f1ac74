/**
 * desired CompiledTable + ActualTable -> one nft transaction (and a readable diff).
 *
 * Order inside the transaction (each step may only reference what exists by then):
 *   1. table (if missing)       2. new chains (empty)       3. maps whose declaration changed: flush
 *   chains, delete the map      4. new maps                 5. element adds (a changed value is a
 *   delete + add of that key)   6. new/changed chains get their rules (flush + add)
 *   7. removed elements         8. removed maps     9. removed chains (flushed first)
 * Make-before-break: every new element and rule is in place before anything old is
 * removed (except in interval maps, which refuse overlapping elements: there the
 * old elements go first); the kernel commits the whole batch atomically anyway, so
 * a packet sees either the old or the new state. The table itself is never flushed or recreated.
 * An interval map losing many elements is flushed and refilled in the same batch instead
 * (rebuildCheaper): nft's per-element deletion there costs in proportion to the map's size.
 */
import {
  chainHash,
  chainRulesWithHash,
  deleteKeyText,
  elementText,
  elementCanon,
  mapDecl,
  mapSignature,
  type CompiledTable,
  type NftElement,
  type NftMap,
} from "./model.js";
import { decodeElements, type ActualTable } from "./readback.js";
import { STAMP_MAP } from "./stamp.js";

/** One map's element changes in a plan (for nfnl/ when the plan changes elements only). */
export interface ElementDelta {
  readonly map: NftMap;
  readonly del: readonly NftElement[];
  readonly add: readonly NftElement[];
}

export interface Plan {
  /** Every element change, stamp included (nfnl/ can write them without nft). */
  elements?: ElementDelta[];
  /** Changes other than elements (tables, maps, chains); 0 = the plan is element deltas only. */
  objects?: number;
  /** The nft script (empty when nothing changes). */
  script: string;
  /** Objects touched: elements added/removed, chains and maps created, rewritten or deleted. */
  ops: number;
  /** Human-readable difference, one line per change ("+ element ...", "~ chain ..."). */
  lines: string[];
}

/**
 * Elements per `add element` command. nft 1.0.6 stores one key byte-swapped when a
 * command grows large: at element 1093 with `return` verdicts, earlier with `goto`
 * verdicts (measured: 1 bad key per 1000-element command). 500 keeps well clear.
 */
const CHUNK = 500;

/** The stamp map's elements are bookkeeping (stamp.ts), not a change to report. */
const bookkeeping = (m: NftMap): boolean => m.name === STAMP_MAP;

export function plan(desired: CompiledTable, actualOrNone: ActualTable | undefined): Plan {
  const T = `${desired.family} ${desired.name}`;
  const actual: ActualTable = actualOrNone ?? { maps: new Map(), chains: new Map() };
  // Text is made only when asked for (script, lines): element-only changes go through
  // nfnl/ as bytes, and their nft text (thousands of elements) would be garbage.
  const cmds: (string | (() => string))[] = [];
  const lines: (string | (() => string))[] = [];
  let ops = 0;
  /** Changes of the stamp map's elements: written, but not reported (they follow every change). */
  let stampOps = 0;
  let elementOps = 0;
  const deltas: ElementDelta[] = [];
  const elemCmd = (verb: "add" | "delete", m: NftMap, els: readonly NftElement[]): void => {
    for (let i = 0; i < els.length; i += CHUNK) {
      const part = els.slice(i, i + CHUNK);
      cmds.push(() => {
        const body =
          verb === "add" ? part.map((e) => elementText(m, e)) : part.map((e) => deleteKeyText(m, e.key));
        return `${verb} element ${T} ${m.name} { ${body.join(", ")} }`;
      });
    }
  };

  if (!actualOrNone) {
    cmds.push(`add table ${T}`);
    lines.push(`+ table ${T}`);
    ops++;
  }
  const desiredMaps = new Map(desired.maps.map((m) => [m.name, m]));
  const desiredChains = new Map(desired.chains.map((c) => [c.name, c]));
  const sigChanged = desired.maps.filter((m) => {
    const a = actual.maps.get(m.name);
    return a !== undefined && a.signature !== mapSignature(m);
  });

  // 2. new chains, empty, so that maps and rules can reference them.
  for (const c of desired.chains) {
    if (actual.chains.has(c.name)) continue;
    cmds.push(c.base ? `add chain ${T} ${c.name} { ${c.base} }` : `add chain ${T} ${c.name}`);
  }
  // 3. a map whose declaration changed is recreated; every chain is rewritten so none still uses it.
  const rewrite = new Set(
    desired.chains
      .filter((c) => {
        const a = actual.chains.get(c.name);
        return a?.hash !== chainHash(c) || a.rules !== c.rules.length || sigChanged.length > 0;
      })
      .map((c) => c.name),
  );
  if (sigChanged.length > 0) {
    for (const name of actual.chains.keys()) cmds.push(`flush chain ${T} ${name}`);
    for (const m of sigChanged) {
      cmds.push(`delete map ${T} ${m.name}`);
      lines.push(`~ map ${m.name} (declaration changed: recreated)`);
      ops++;
    }
  }
  // 4. new maps.
  for (const m of desired.maps) {
    const a = actual.maps.get(m.name);
    if (a && !sigChanged.includes(m)) continue;
    cmds.push(`add map ${T} ${m.name} { ${mapDecl(m)} }`);
    if (!a) lines.push(`+ map ${m.name}`);
    ops++;
  }
  // 5. element adds; collect removals for step 7.
  const removals: [NftMap, NftElement[]][] = [];
  for (const m of desired.maps) {
    const a = actual.maps.get(m.name);
    const have = a && !sigChanged.includes(m) ? (a.decoded ?? decodeElements(m, a.rawElements)) : [];
    const haveBy = new Map(have.map((e) => [elementCanon(e), e]));
    const wantKeys = new Set<string>();
    const adds: NftElement[] = [];
    const replaced: NftElement[] = [];
    for (const e of m.elements) {
      const k = elementCanon(e);
      wantKeys.add(k);
      const h = haveBy.get(k);
      if (h && h.value === e.value) continue;
      if (h) replaced.push(h);
      adds.push(e);
      if (!bookkeeping(m)) lines.push(() => `${h ? "~" : "+"} element ${m.name} ${elementText(m, e)}`);
    }
    const removed = have.filter((e) => !wantKeys.has(elementCanon(e)));
    if (adds.length + replaced.length + removed.length > 0)
      deltas.push({ map: m, del: [...replaced, ...removed], add: adds });
    if (bookkeeping(m)) stampOps += adds.length + replaced.length + removed.length;
    else {
      elementOps += adds.length + replaced.length + removed.length;
      for (const e of removed) lines.push(() => `- element ${m.name} ${elementText(m, e)}`);
      ops += adds.length + replaced.length + removed.length;
    }
    if (m.interval && rebuildCheaper(replaced.length + removed.length, have.length, m.elements.length)) {
      // nft deletes each interval element at a cost that grows with the map
      // (10,000 deletions from a 10,000-element concatenated map: minutes of
      // CPU in nft); flushing and re-adding costs one add per element kept.
      // Same atomic batch, so packets never see the map empty.
      cmds.push(`flush map ${T} ${m.name}`);
      elemCmd("add", m, m.elements);
      continue;
    }
    if (replaced.length > 0) elemCmd("delete", m, replaced);
    // An interval map rejects an element that overlaps one still present, even
    // one this batch deletes later (e.g. the catch-all world range split around
    // a new endpoint address). The batch commits atomically, so deleting first
    // opens no window for packets.
    if (m.interval && removed.length > 0) elemCmd("delete", m, removed);
    if (adds.length > 0) elemCmd("add", m, adds);
    if (!m.interval && removed.length > 0) removals.push([m, removed]);
  }
  // 6. chain rules.
  for (const c of desired.chains) {
    if (!rewrite.has(c.name)) continue;
    const existed = actual.chains.has(c.name);
    if (existed && sigChanged.length === 0) cmds.push(`flush chain ${T} ${c.name}`);
    for (const r of chainRulesWithHash(c)) cmds.push(`add rule ${T} ${c.name} ${r}`);
    lines.push(`${existed ? "~" : "+"} chain ${c.name} (${c.rules.length} rules)`);
    ops++;
  }
  // 7. removed elements, 8. removed maps, 9. removed chains.
  for (const [m, els] of removals) elemCmd("delete", m, els);
  const goneChains = [...actual.chains.keys()].filter((n) => !desiredChains.has(n)).sort();
  for (const n of goneChains) if (sigChanged.length === 0) cmds.push(`flush chain ${T} ${n}`);
  // Maps go before chains: their verdict elements may still jump to a chain being deleted.
  for (const n of [...actual.maps.keys()].filter((n) => !desiredMaps.has(n)).sort()) {
    cmds.push(`delete map ${T} ${n}`);
    lines.push(`- map ${n}`);
    ops++;
  }
  for (const n of goneChains) {
    cmds.push(`delete chain ${T} ${n}`);
    lines.push(`- chain ${n}`);
    ops++;
  }
  return lazyPlan({
    script: () => (ops + stampOps === 0 ? "" : cmds.map(text).join("\n") + "\n"),
    ops,
    lines: () => lines.map(text),
    elements: deltas,
    objects: ops - elementOps,
  });
}

const text = (x: string | (() => string)): string => (typeof x === "string" ? x : x());

/** A Plan whose script and lines are rendered on first use (and then kept). */
export function lazyPlan(p: {
  script: () => string;
  lines: () => string[];
  ops: number;
  elements?: ElementDelta[];
  objects?: number;
}): Plan {
  let script: string | undefined;
  let lines: string[] | undefined;
  return {
    get script(): string {
      return (script ??= p.script());
    },
    get lines(): string[] {
      return (lines ??= p.lines());
    },
    ops: p.ops,
    ...(p.elements ? { elements: p.elements } : {}),
    ...(p.objects !== undefined ? { objects: p.objects } : {}),
  };
}

/**
 * Measured with nft 1.0.6: deleting one element from an interval map costs
 * about as much as adding REBUILD_RATIO elements per 1,000 elements the map
 * holds (a deletion scans the map; an add does not). So k deletions from a
 * map of `have` elements cost about k * have / 1000 * REBUILD_RATIO adds,
 * against `want` adds (plus a flush) for rebuilding it.
 */
const REBUILD_RATIO = 50;

export function rebuildCheaper(deletions: number, have: number, want: number): boolean {
  if (deletions === 0) return false;
  return (deletions * have * REBUILD_RATIO) / 1000 > want + have / 10;
}

/**
 * The table as we last applied it, in the shape a readback has: planning
 * against it needs no `nft list` (whose cost grows with the table).
 */
export function asActual(t: CompiledTable): ActualTable {
  return {
    maps: new Map(
      t.maps.map((m) => [
        m.name,
        {
          name: m.name,
          signature: mapSignature(m),
          rawElements: [],
          // Read, never written, by plan(): no copy.
          decoded: m.elements,
        },
      ]),
    ),
    chains: new Map(
      t.chains.map((c) => [c.name, { name: c.name, hash: chainHash(c), rules: c.rules.length }]),
    ),
  };
}
