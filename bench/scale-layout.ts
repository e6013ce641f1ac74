/**
 * The kernel's cost of the scale bench's policy apply, per map layout (needs
 * root; issue 10 item 1): 1,000 endpoints shaped like bench/scale-world.ts's
 * (db endpoints allow 12 identities on 5432|5433, web endpoints 10 on :80 in,
 * 10 on :443 and the db identities on :5432 out), then the db port toggled on
 * the 200 db endpoints, as one nfnetlink batch per table, A/B interleaved:
 *
 *   A "interval": every port map a concatenated interval map (pipapo), the layout before
 *   B "hash":     single ports in hash maps, ranges only in interval maps (segments.ts)
 *
 * Each table has its own writer process; the figure is its CPU time per toggle
 * (/proc/<pid>/schedstat, and user/system from /proc/<pid>/stat), the kernel's
 * work being done inside its sendmsg. One JSON line per layout.
 *
 *   node dist/bench/scale-layout.js [--endpoints=1000] [--rounds=20] [--only=hash|interval]
 *
 * Scratch namespace: "mx1<hex>-node", removed at the end.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { compileEndpoint, type EndpointParts } from "../src/datapath/compile-endpoint.js";
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

/** Layout A: the port maps as interval maps (the layout before this change). */
function asInterval(p: EndpointParts): EndpointParts {
  return {
    ...p,
    maps: p.maps.map((m): NftMap => (/_(id|any)$/.test(m.name) ? { ...m, interval: true } : m)),
  };
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
  return {
    family: "inet",
    name: global.name,
    maps: [...(part?.maps ?? []), ...dispatch],
    chains: [...(part?.chains ?? [])],
  };
}

/** CPU time of a process: on-CPU ns (schedstat) and user/system ms (stat, 10 ms ticks). */
function cpuOf(pid: number): { ns: number; user: number; system: number } {
  const ns = Number(readFileSync(`/proc/${pid}/schedstat`, "latin1").split(" ")[0]);
  const st = readFileSync(`/proc/${pid}/stat`, "latin1");
  const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
  return { ns, user: Number(f[11]) * 10, system: Number(f[12]) * 10 };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, d: number): number =>
    Number(argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? d);
  const n = arg("endpoints", 1000);
  const rounds = arg("rounds", 20);
  // --only=hash|interval: one layout (to profile its writer with perf).
  const only = argv.find((a) => a.startsWith("--only="))?.slice("--only=".length);
  const prefix = "mx1" + randomBytes(3).toString("hex");
  const node = await createNode({ netns: `${prefix}-node` });
  const state: DatapathState = { hostIdentity: 1, ipcache: [], endpoints: [], rules: [] };
  const ctx = { group: 1, ruleText: () => undefined };
  const layouts = [
    { name: "interval", table: "la", shape: asInterval },
    { name: "hash", table: "lb", shape: (p: EndpointParts) => p },
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
    const parts = (db: number): Map<number, EndpointParts> =>
      new Map(Array.from({ length: n }, (_, i) => [i + 1, compileEndpoint(endpoint(i, db), ctx)]));
    const had = parts(5432);
    const next = parts(5433);
    for (const l of layouts) {
      const global = globalPart(state, { table: l.table, logGroup: 1 });
      await nftApply(plan(global, undefined).script, { netns: node.netns });
      const ids = [...had.keys()];
      for (let i = 0; i < ids.length; i += 100) {
        const scopes = ids.slice(i, i + 100).map((id) => ({
          want: scope(global, l.shape(had.get(id) as EndpointParts)),
          had: scope(global, undefined),
        }));
        await l.w.applyMessages(objectMessages(l.table, [], scopes, []) ?? []);
      }
    }
    const dbIds = [...had.keys()].filter((id) => (id - 1) % 5 === 0);
    let elements = 0;
    for (let r = 0; r < rounds; r++) {
      const [from, to] = r % 2 === 0 ? [had, next] : [next, had];
      for (const l of r % 2 === 0 ? layouts : [...layouts].reverse()) {
        const global = globalPart(state, { table: l.table, logGroup: 1 });
        const scopes = dbIds.map((id) => ({
          want: scope(global, l.shape(to.get(id) as EndpointParts)),
          had: scope(global, l.shape(from.get(id) as EndpointParts)),
        }));
        const msgs = objectMessages(l.table, [], scopes, []);
        if (!msgs) throw new Error(`layout ${l.name}: the change is not encodable`);
        if (l.name === "hash" && r === 0) elements = msgs.length;
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
          messagesPerToggle: elements,
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
