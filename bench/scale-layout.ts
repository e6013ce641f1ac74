/**
 * The kernel's cost of the scale bench's policy apply, per map layout (needs
 * root; issue 10 item 1): 1,000 endpoints shaped like bench/scale-world.ts's
 * (db endpoints allow 12 identities on 5432|5433, web endpoints 10 on :80 in,
 * 10 on :443 and the db identities on :5432 out), then the db port toggled on
 * the 200 db endpoints, as one nfnetlink batch per table, A/B interleaved:
 *
 *   A "interval": every endpoint its own policy maps, every port map a concatenated
 *                 interval map (pipapo): the layout before issue 10 item 1
 *   B "hash":     every endpoint its own policy maps, single ports in hash maps, ranges
 *                 only in interval maps (segments.ts)
 *   C "grouped":  as B, but endpoints with the same policy share one group's chains
 *                 and maps (policy-groups.ts): the toggle changes one group in place
 *
 * Each table has its own writer process; the figure is its CPU time per toggle
 * (/proc/<pid>/schedstat, and user/system from /proc/<pid>/stat), the kernel's
 * work being done inside its sendmsg. One JSON line per layout.
 *
 *   node dist/bench/scale-layout.js [--endpoints=1000] [--rounds=20] [--only=hash|interval|grouped]
 *
 * Scratch namespace: "mx1<hex>-node", removed at the end.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { benchArgs, choice, int } from "./cli.js";
import {
  compileEndpoint,
  type EndpointContext,
  type EndpointParts,
} from "../src/datapath/compile-endpoint.js";
import { compileGrouped } from "../src/datapath/group-table.js";
import { compileGroup, groupKey, type GroupPart } from "../src/datapath/policy-groups.js";
import { globalPart } from "../src/datapath/compile.js";
import { createNode } from "../src/datapath/endpoint.js";
import { nftApply } from "../src/datapath/exec.js";
import type { CompiledTable, NftMap } from "../src/datapath/model.js";
import { cleanupPrefix } from "../src/datapath/netns.js";
import { objectMessages } from "../src/datapath/nfnl/objects.js";
import { SetElemWriter } from "../src/datapath/nfnl/setelem.js";
import { plan } from "../src/datapath/plan.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../src/datapath/types.js";

const DISPATCH = ["egress_ep", "ingress_ep", "ingress_ep4", "ingress_ep6"] as const;
const r1 = (x: number): number => Math.round(x * 10) / 10;

const allow = (identity: number, port: number, ruleId: number): PolicySegment => ({
  identity,
  proto: 6,
  lo: port,
  hi: port,
  action: "allow",
  ruleId,
});

/** Endpoint `i` (id i+1) with the db port `db`. */
function endpoint(i: number, db: number): DatapathEndpoint {
  const id = i + 1;
  const g = (base: number): number[] => Array.from({ length: 10 }, (_, k) => base + k);
  const isDb = i % 5 === 0;
  return {
    id,
    name: `ep${i}`,
    hostIfname: `mbr${id}`,
    ipv4: `10.222.${id >> 8}.${id & 255}`,
    identity: 100_000 + (isDb ? 1 : 2),
    ingress: {
      enforced: true,
      segments: isDb
        ? [...g(300), 100_001, 100_003].map((x) => allow(x, db, 1))
        : g(310).map((x) => allow(x, 80, 2)),
    },
    egress: isDb
      ? { enforced: false, segments: [] }
      : {
          enforced: true,
          segments: [...g(320).map((x) => allow(x, 443, 3)), allow(100_001, 5432, 4)],
        },
  };
}

interface Layout {
  parts: Map<number, EndpointParts>;
  groups: Map<string, GroupPart>;
}

/** Every endpoint its own groups (g<id>_<dir>): the per-endpoint layout, as policy groups. */
function unshared(eps: readonly DatapathEndpoint[], ctx: EndpointContext): Layout {
  const parts = new Map<number, EndpointParts>();
  const groups = new Map<string, GroupPart>();
  for (const ep of eps) {
    const refs: { in?: { name: string; key: string }; out?: { name: string; key: string } } = {};
    for (const dir of ["in", "out"] as const) {
      const policy = dir === "in" ? ep.ingress : ep.egress;
      const key = groupKey(dir, policy);
      if (key === undefined) continue;
      const g = compileGroup(ep.id, dir, key, policy, ctx, `ep ${ep.id}`);
      groups.set(g.name, g);
      refs[dir] = { name: g.name, key };
    }
    parts.set(ep.id, compileEndpoint(ep, ctx, refs));
  }
  return { parts, groups };
}

/** Layout A: the port maps as interval maps (the layout before issue 10 item 1). */
function asInterval(l: Layout): Layout {
  const groups = new Map<string, GroupPart>();
  for (const [name, g] of l.groups)
    groups.set(name, {
      ...g,
      maps: g.maps.map((m): NftMap => (/_(id|any)$/.test(m.name) ? { ...m, interval: true } : m)),
    });
  return { parts: l.parts, groups };
}

function scope(global: CompiledTable, part: EndpointParts | undefined): CompiledTable {
  const els = {
    egress_ep: part?.dispatch.egress,
    ingress_ep: part?.dispatch.ingress,
    ingress_ep4: part?.dispatch.ingress4,
    ingress_ep6: part?.dispatch.ingress6,
  };
  const dispatch = DISPATCH.map((n): NftMap => {
    const m = global.maps.find((x) => x.name === n) as NftMap;
    const e = els[n];
    return { ...m, elements: e ? [e] : [] };
  });
  return { family: "inet", name: global.name, maps: dispatch, chains: [...(part?.chains ?? [])] };
}

const groupScope = (global: CompiledTable, g: GroupPart | undefined): CompiledTable => ({
  family: "inet",
  name: global.name,
  maps: g?.maps ?? [],
  chains: g?.chains ?? [],
});

/** The scopes from `from` to `to` (incremental.ts's order), only those that differ. */
function scopesOf(
  global: CompiledTable,
  from: Layout | undefined,
  to: Layout,
): { want: CompiledTable; had: CompiledTable }[] {
  const out: { want: CompiledTable; had: CompiledTable }[] = [];
  for (const [name, g] of to.groups) {
    const h = from?.groups.get(name);
    if (h?.key !== g.key) out.push({ want: groupScope(global, g), had: groupScope(global, h) });
  }
  for (const [id, p] of to.parts) {
    const h = from?.parts.get(id);
    if (h?.chains.map((c) => c.rules.join()).join() !== p.chains.map((c) => c.rules.join()).join())
      out.push({ want: scope(global, p), had: scope(global, h) });
  }
  for (const [name, h] of from?.groups ?? [])
    if (!to.groups.has(name)) out.push({ want: groupScope(global, undefined), had: groupScope(global, h) });
  return out;
}

/** CPU time of a process: on-CPU ns (schedstat) and user/system ms (stat, 10 ms ticks). */
function cpuOf(pid: number): { ns: number; user: number; system: number } {
  const ns = Number(readFileSync(`/proc/${pid}/schedstat`, "latin1").split(" ")[0]);
  const st = readFileSync(`/proc/${pid}/stat`, "latin1");
  const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
  return { ns, user: Number(f[11]) * 10, system: Number(f[12]) * 10 };
}

async function main(): Promise<void> {
  const { flags } = benchArgs({
    script: "scale-layout",
    measures: "The kernel's cost of the scale bench's policy apply per map layout (interval, hash, grouped): 1,000 endpoints, then the db port toggled on the db endpoints, one nfnetlink batch per table, A/B interleaved; the writer process's CPU per toggle. One JSON line per layout.", // prettier-ignore
    root: "a scratch node namespace (mx1<hex>-node) and nftables tables",
    flags: {
      endpoints: int({ help: "endpoints", min: 1, max: 100_000, default: 1000 }),
      rounds: int({ help: "toggles per layout", min: 1, max: 10_000, default: 20 }),
      only: choice({ help: "one layout (to profile its writer with perf)", choices: ["hash", "interval", "grouped"], shown: "all three" }), // prettier-ignore
    },
  });
  const n = flags.endpoints;
  const rounds = flags.rounds;
  const only = flags.only;
  const prefix = "mx1" + randomBytes(3).toString("hex");
  const node = await createNode({ netns: `${prefix}-node` });
  const state: DatapathState = { hostIdentity: 1, ipcache: [], endpoints: [], rules: [] };
  const ctx: EndpointContext = { group: 1, ruleText: () => undefined };
  const eps = (db: number): DatapathEndpoint[] => Array.from({ length: n }, (_, i) => endpoint(i, db));
  const layouts = [
    { name: "interval", table: "la", make: (db: number) => asInterval(unshared(eps(db), ctx)) },
    { name: "hash", table: "lb", make: (db: number) => unshared(eps(db), ctx) },
    { name: "grouped", table: "lc", make: (db: number) => compileGrouped(eps(db), ctx) },
  ]
    .filter((l) => only === undefined || l.name === only)
    .map((l) => ({
      ...l,
      w: new SetElemWriter(node.netns, 60_000),
      ns: 0,
      user: 0,
      system: 0,
      ms: [] as number[],
    }));
  try {
    const built = layouts.map((l) => ({ had: l.make(5432), next: l.make(5433) }));
    for (const [i, l] of layouts.entries()) {
      const global = globalPart(state, { table: l.table, logGroup: 1 });
      await nftApply(plan(global, undefined).script, { netns: node.netns });
      const all = scopesOf(global, undefined, (built[i] as { had: Layout }).had);
      for (let k = 0; k < all.length; k += 100)
        await l.w.applyMessages(objectMessages(l.table, [], all.slice(k, k + 100), []) ?? []);
    }
    const dbIds = Array.from({ length: n }, (_, i) => i + 1).filter((id) => (id - 1) % 5 === 0);
    const elements = new Map<string, number>();
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? layouts : [...layouts].reverse();
      for (const l of order) {
        const b = built[layouts.indexOf(l)] as { had: Layout; next: Layout };
        const [from, to] = r % 2 === 0 ? [b.had, b.next] : [b.next, b.had];
        const global = globalPart(state, { table: l.table, logGroup: 1 });
        const msgs = objectMessages(l.table, [], scopesOf(global, from, to), []);
        if (!msgs) throw new Error(`layout ${l.name}: the change is not encodable`);
        if (r === 0) elements.set(l.name, msgs.length);
        const pid = (l.w as unknown as { child?: { pid?: number } }).child?.pid as number;
        const c0 = cpuOf(pid);
        const t = performance.now();
        await l.w.applyMessages(msgs);
        l.ms.push(performance.now() - t);
        const c1 = cpuOf(pid);
        l.ns += c1.ns - c0.ns;
        l.user += c1.user - c0.user;
        l.system += c1.system - c0.system;
      }
    }
    for (const l of layouts) {
      const ms = [...l.ms].sort((a, b) => a - b);
      console.log(
        JSON.stringify({
          bench: "scale-layout",
          layout: l.name,
          endpoints: n,
          changedEndpoints: dbIds.length,
          messagesPerToggle: elements.get(l.name),
          maps: [...(built[layouts.indexOf(l)]?.had.groups.values() ?? [])].reduce(
            (k, g) => k + g.maps.length,
            0,
          ),
          rounds,
          writerCpuMsPerToggle: r1(l.ns / 1e6 / rounds),
          writerUserMsPerToggle: r1(l.user / rounds),
          writerSystemMsPerToggle: r1(l.system / rounds),
          wallP50Ms: r1(ms[Math.floor(ms.length / 2)] ?? 0),
          wallMaxMs: r1(ms.at(-1) ?? 0),
          load1m: r1(loadavg()[0] ?? 0),
        }),
      );
    }
  } finally {
    for (const l of layouts) l.w.stop();
    await cleanupPrefix(`${prefix}-`);
  }
}

await main();
