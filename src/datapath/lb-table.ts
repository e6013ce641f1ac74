/**
 * The node's LB table in the kernel. Frontends come in groups (a Service's frontends, keyed
 * by namespace/name); the table keeps each group's compiled elements, so a change costs what
 * the changed groups hold, not what the table holds. The first write (and any write after a
 * failure) writes the table whole; every later one writes the element delta of the changed
 * groups, in one transaction (one nf_tables batch, or `nft` when a chain comes or goes). The batch
 * goes through the agent's own nfnetlink socket in the node namespace (nfnl/socket.ts: answered
 * within the call, no process to wake), or the writer process when the addon is not built.
 *
 *   LbTable.update({group -> frontends}) --compileFrontend (changed groups only)-->
 *       element delta vs realized --nfnl batch | nft -f--> kernel
 *   (realized changes only once the kernel took it)
 */
import { nftApply } from "./exec.js";
import { lbWireDelta } from "./lb-wire.js";
import { SetElemWriter } from "./nfnl/setelem.js";
import { invalid } from "./compile-error.js";
import {
  compileFrontend,
  frontendKey,
  lbDelta,
  lbTableScript,
  LB_SETS,
  type CompiledFrontend,
  type CompiledLb,
  type LbElements,
} from "./lb-compile.js";
import type { LbFrontend, LbState } from "./lb-types.js";

export interface LbTableParams {
  /** The node's network namespace (the current one when absent). */
  netns?: string;
  /** Table name (family inet); default "membrane_lb". */
  table?: string;
  /** The node's IPv4 pod CIDRs: a NodePort connection to a backend elsewhere is masqueraded (lb-compile.ts). */
  localCidrs?: readonly string[];
  /** The flow observer's NFLOG group: new service connections are logged before the DNAT (lb-compile.ts). */
  logGroup?: number;
  /**
   * How element deltas reach the kernel: "socket" (default), the agent's own nfnetlink socket in the
   * namespace (nfnl/socket.ts), falling back to "process", the writer process (nfnl/setelem.ts).
   */
  writer?: "socket" | "process";
}

export interface LbApplyResult {
  /** "full": the table was written whole; "delta": elements only; "none": nothing changed. */
  mode: "full" | "delta" | "none";
  ops: number;
  /** Milliseconds spent writing to the kernel (the rest is compiling and diffing in Node). */
  kernelMs: number;
  /**
   * "nfnl-socket": one nf_tables batch through the agent's own socket; "nfnl": through the writer
   * process; "nft": through the nft binary.
   */
  writer?: "nfnl-socket" | "nfnl" | "nft";
}

/** A group's frontends, compiled; and the chains with how many frontends go to each. */
type Groups = Map<string, CompiledFrontend[]>;
interface Realized {
  groups: Groups;
  /** frontend key -> its group (a key belongs to one group). */
  owner: Map<string, string>;
  chains: Map<string, { rules: string[]; refs: number }>;
}

const emptyElements = (): LbElements => new Map(LB_SETS.map((s) => [s.name, new Map<string, string>()]));

export class LbTable {
  readonly table: string;
  /** What the kernel holds (undefined: unknown, the next write is whole). */
  private realized: Realized | undefined;
  /** Every group asked for (rewritten whole from here after a failure). */
  private readonly wanted = new Map<string, readonly LbFrontend[]>();
  private writer: SetElemWriter;

  constructor(private readonly p: LbTableParams = {}) {
    this.table = p.table ?? "membrane_lb";
    this.writer = this.newWriter();
  }

  private newWriter(): SetElemWriter {
    return new SetElemWriter(this.p.netns, undefined, { inProcess: this.p.writer !== "process" });
  }

  private opts(): { netns?: string } {
    return this.p.netns !== undefined ? { netns: this.p.netns } : {};
  }

  /** True when the next update writes the table whole (first write, or after a failure). */
  get needsFull(): boolean {
    return this.realized === undefined;
  }

  /** Makes the kernel hold `state` (every frontend its own group; groups not in it go). O(table). */
  apply(state: LbState): Promise<LbApplyResult> {
    const changes = new Map<string, readonly LbFrontend[]>();
    for (const g of this.wanted.keys()) changes.set(g, []);
    for (const f of state.frontends) changes.set(frontendKey(f), [f]);
    if (changes.size < state.frontends.length) {
      const seen = new Set<string>();
      state.frontends.forEach((f, i) => {
        const k = frontendKey(f);
        if (seen.has(k)) throw invalid(`frontends[${i}]`, `${k} is used twice`);
        seen.add(k);
      });
    }
    return this.update(changes);
  }

  /**
   * Sets the frontends of the groups named in `changes` (an empty list: the group goes); the
   * others stay. Checks every changed frontend before writing anything; throws (and forgets
   * what the kernel held) when the kernel refuses.
   */
  async update(changes: ReadonlyMap<string, readonly LbFrontend[]>): Promise<LbApplyResult> {
    const was = this.realized;
    if (!was) return this.writeWhole(changes);
    const prev = (set: string, key: string): string | undefined => {
      // The frontend key from the element key (lb-compile.ts frontendKey): IPv6 NodePorts carry "v6 . ".
      const np = set.startsWith("np");
      const front = key
        .split(" . ")
        .slice(0, np ? 2 : 3)
        .join(" . ");
      const g = was.owner.get(np && set.endsWith("6") ? `v6 . ${front}` : front);
      const els = g === undefined ? undefined : was.groups.get(g);
      for (const f of els ?? []) for (const [s, k, v] of f.elements) if (s === set && k === key) return v;
      return undefined;
    };
    const compiled = compileGroups(changes, prev);
    // A frontend key held by a group that is not changing stays its: another may not take it.
    const taken = new Map<string, string>();
    for (const [g, fronts] of compiled)
      fronts.forEach((f, i) => {
        const o = taken.get(f.key) ?? was.owner.get(f.key);
        if (o !== undefined && o !== g && (taken.has(f.key) || !changes.has(o)))
          throw invalid(`${g}.frontends[${i}]`, `${f.key} is used by ${o}`);
        taken.set(f.key, g);
      });
    const before = { chains: new Map<string, string[]>(), elements: emptyElements() };
    const after = { chains: new Map<string, string[]>(), elements: emptyElements() };
    const chains = new Map([...was.chains].map(([n, c]) => [n, { ...c }]));
    for (const [g, fronts] of compiled) {
      for (const f of was.groups.get(g) ?? []) {
        for (const [s, k, v] of f.elements) before.elements.get(s)?.set(k, v);
        if (f.chain) (chains.get(f.chain.name) as { refs: number }).refs--;
      }
      for (const f of fronts) {
        for (const [s, k, v] of f.elements) after.elements.get(s)?.set(k, v);
        if (f.chain) {
          const c = chains.get(f.chain.name) ?? { rules: f.chain.rules, refs: 0 };
          c.refs++;
          chains.set(f.chain.name, c);
        }
      }
    }
    for (const [n, c] of was.chains) if (c.refs > 0) before.chains.set(n, c.rules);
    for (const [n, c] of chains) if (c.refs > 0) after.chains.set(n, c.rules);
    for (const [n, c] of [...chains]) if (c.refs <= 0) chains.delete(n);
    const next = (): void => {
      for (const [g, fronts] of compiled) {
        for (const f of was.groups.get(g) ?? []) if (was.owner.get(f.key) === g) was.owner.delete(f.key);
        if (fronts.length) was.groups.set(g, fronts);
        else was.groups.delete(g);
      }
      for (const [g, fronts] of compiled) for (const f of fronts) was.owner.set(f.key, g);
      was.chains = chains;
      for (const [g, fronts] of changes) if (fronts.length) this.wanted.set(g, fronts); else this.wanted.delete(g); // prettier-ignore
    };
    const d = lbDelta(this.table, before, after);
    if (d.script === "") {
      next();
      return { mode: "none", ops: 0, kernelMs: 0 };
    }
    const t0 = performance.now();
    let writer: NonNullable<LbApplyResult["writer"]> = "nft";
    try {
      // Elements only (no new or removed chain): one nf_tables batch, without nft.
      const sameChains =
        after.chains.size === before.chains.size &&
        [...after.chains.keys()].every((c) => before.chains.has(c));
      const wire = sameChains ? lbWireDelta(before.elements, after.elements) : undefined;
      if (wire) {
        await this.writer.apply(this.table, wire);
        writer = this.writer.via === "socket" ? "nfnl-socket" : "nfnl";
      } else await nftApply(d.script, this.opts());
    } catch (e) {
      // Unknown kernel state: the next update writes the table whole (from `wanted`).
      this.realized = undefined;
      for (const [g, fronts] of changes) if (fronts.length) this.wanted.set(g, fronts); else this.wanted.delete(g); // prettier-ignore
      throw e;
    }
    next();
    return { mode: "delta", ops: d.ops, kernelMs: performance.now() - t0, writer };
  }

  /** Writes the table whole: every wanted group with `changes` over them. */
  private async writeWhole(changes: ReadonlyMap<string, readonly LbFrontend[]>): Promise<LbApplyResult> {
    const all = new Map(this.wanted);
    for (const [g, fronts] of changes) if (fronts.length) all.set(g, fronts); else all.delete(g); // prettier-ignore
    const groups = compileGroups(all);
    const r: Realized = { groups, owner: new Map(), chains: new Map() };
    const whole: CompiledLb = { chains: new Map(), elements: emptyElements() };
    for (const [g, fronts] of groups) {
      fronts.forEach((f, i) => {
        const o = r.owner.get(f.key);
        if (o !== undefined) throw invalid(`${g}.frontends[${i}]`, `${f.key} is used by ${o}`);
        r.owner.set(f.key, g);
        for (const [s, k, v] of f.elements) whole.elements.get(s)?.set(k, v);
        if (!f.chain) return;
        const c = r.chains.get(f.chain.name) ?? { rules: f.chain.rules, refs: 0 };
        c.refs++;
        r.chains.set(f.chain.name, c);
        whole.chains.set(f.chain.name, f.chain.rules);
      });
    }
    this.wanted.clear();
    for (const [g, fronts] of all) this.wanted.set(g, fronts);
    const t0 = performance.now();
    await nftApply(lbTableScript(this.table, whole, this.p.localCidrs, this.p.logGroup), this.opts());
    this.realized = r;
    let ops = 0;
    for (const m of whole.elements.values()) ops += m.size;
    return { mode: "full", ops, kernelMs: performance.now() - t0, writer: "nft" };
  }

  /** Stops the element writer's process (the table stays). */
  stop(): void {
    this.writer.stop();
  }

  /** Removes the table (uninstall, tests). */
  async destroy(): Promise<void> {
    this.realized = undefined;
    this.wanted.clear();
    // A fresh (idle) writer: the table may be written again (a Service after the last one went),
    // and a stopped writer refuses every delta.
    this.writer.stop();
    this.writer = this.newWriter();
    await nftApply(`table inet ${this.table} {}\ndelete table inet ${this.table}\n`, this.opts());
  }
}

/** Compiles each group (every frontend checked; errors name "group.frontends[i]"). */
function compileGroups(
  groups: ReadonlyMap<string, readonly LbFrontend[]>,
  prev?: (set: string, key: string) => string | undefined,
): Groups {
  const out: Groups = new Map();
  for (const [g, fronts] of groups) {
    const seen = new Set<string>();
    out.set(
      g,
      fronts.map((f, i) => {
        const c = compileFrontend(f, `${g}.frontends[${i}]`, prev);
        if (seen.has(c.key)) throw invalid(`${g}.frontends[${i}]`, `${c.key} is used twice`);
        seen.add(c.key);
        return c;
      }),
    );
  }
  return out;
}
