/**
 * What a bigger table costs an established TCP stream: one node namespace, two
 * real endpoints (client, server), and several Membrane tables loaded side by
 * side, each with the same two endpoints plus N-2 endpoints that exist only in
 * the table (as in the scale benchmark, whose endpoints have no namespaces),
 * 50,000 remote hosts and a policy per endpoint. Only one table's base chains
 * are attached at a time; a window measures iperf3 (client and server pinned)
 * through it. Conditions run in rotating order, round after round, so that each
 * pair of conditions is compared within a round (ratio per round, then median).
 *
 *   client --veth--> node netns: conntrack, <one table's pre_c> --veth--> server
 *
 *   "ct":      every table loaded, no base chain: conntrack alone (the tables' ct
 *              expressions keep it on), no nft rule on the path
 *   "<v>:<N>": table of compiler <v> ("cur": this build; "old": the build at --old=DIR,
 *              e.g. a copy of dist/ from before a change) with N endpoints
 *
 *   node dist/bench/traffic-table.js [--sizes=250,1000] [--old=DIR] [--rounds=6] [--seconds=3]
 *        [--nice=N]     (both iperf3 ends run under nice -n N: less noise on a shared machine)
 *        [--perf=DIR]   (perf record -a of every window, into DIR/<cond>-r<round>.data)
 *
 * One JSON line per window, then one summary line per condition: CPU seconds
 * per GB of both ends (iperf3's rusage; a veth delivers in the sender's softirq
 * and this kernel charges softirq time to the interrupted task), Gbit/s, and the
 * ratios against the first table condition. Load average with every line.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { createEndpoint, createNode } from "../src/datapath/endpoint.js";
import { runRaw } from "../src/datapath/exec.js";
import { cleanupPrefix } from "../src/datapath/netns.js";
import { HostTable } from "../src/ipcache/hosts.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../src/datapath/types.js";
import type { CompiledTable } from "../src/datapath/model.js";
import { median, r1 } from "./traffic-stats.js";
import { IPERF_PORT } from "./traffic.js";
import { benchArgs, custom, int, text } from "./cli.js";

type Compile = (s: DatapathState, o: { table: string }) => CompiledTable;
interface Variant {
  readonly name: string;
  readonly compile: Compile;
  readonly Reconciler: new (p: { netns: string; table: string }) => {
    apply(s: DatapathState): Promise<unknown>;
    stop(): void;
  };
}

const CLIENT_ID = 300;
const SERVER_ID = 301;
const seg = (identity: number, port: number, ruleId = 1): PolicySegment => ({
  identity,
  proto: 6,
  lo: port,
  hi: port,
  action: "allow",
  ruleId,
});

function endpoint(i: number, ifname: string, ipv4: string, identity: number): DatapathEndpoint {
  // The traffic pair: the server's ingress allows the client on the iperf3 port; the
  // client's egress allows the server there. Others: a few identities on three ports.
  const ingress =
    identity === SERVER_ID
      ? [seg(CLIENT_ID, IPERF_PORT)]
      : [80, 443, 5432].flatMap((p, k) => [seg(1000 + ((i * 7 + k) % 9000), p, k + 2), seg(CLIENT_ID, p, 5)]);
  const egress =
    identity === CLIENT_ID ? [seg(SERVER_ID, IPERF_PORT)] : [seg(0, 53, 6), seg(SERVER_ID, 80, 7)];
  return {
    id: i,
    name: `ep${i}`,
    hostIfname: ifname,
    ipv4,
    identity,
    ingress: { enforced: true, segments: ingress },
    egress: { enforced: true, segments: egress },
  };
}

function state(n: number, prefix: string, hosts: HostTable): DatapathState {
  const eps: DatapathEndpoint[] = [
    endpoint(1, `${prefix}c`, "10.222.0.1", CLIENT_ID),
    endpoint(2, `${prefix}s`, "10.222.0.2", SERVER_ID),
  ];
  for (let i = 3; i <= n; i++)
    eps.push(endpoint(i, `${prefix}f${i}`, `10.222.${i >> 8}.${i & 255}`, 1000 + (i % 9000)));
  // The agent puts its endpoints' addresses in the host map (their identities).
  for (const e of eps) if (e.ipv4 !== undefined) hosts.set(e.ipv4, e.identity);
  return {
    hostIdentity: 1,
    rules: [],
    ipcache: [{ prefix: "10.222.0.0/16", identity: 2 }],
    hosts,
    endpoints: eps,
  };
}

async function nft(netns: string, script: string): Promise<void> {
  const r = await runRaw(["nft", "-f", "-"], { netns, stdin: script });
  if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
}

const BASE = ["pre_c", "out_c"];
function attachScript(t: CompiledTable): string {
  const out: string[] = [];
  for (const c of t.chains) {
    if (!BASE.includes(c.name) || c.base === undefined) continue;
    out.push(`add chain inet ${t.name} ${c.name} { ${c.base} }`);
    for (const r of c.rules) out.push(`add rule inet ${t.name} ${c.name} ${r}`);
  }
  return out.join("\n") + "\n";
}
const detachScript = (t: CompiledTable): string =>
  BASE.map((c) => `delete chain inet ${t.name} ${c}`).join("\n") + "\n";

async function main(): Promise<void> {
  const { flags } = benchArgs({
    script: "traffic-table",
    measures: "What a bigger table costs an established TCP stream: several Membrane tables loaded side by side in one node namespace, one attached at a time, iperf3 through it in rotating order; CPU seconds per GB of both ends, Gbit/s, ratios against the first table. One JSON line per window, then one per condition.", // prettier-ignore
    root: "a scratch node namespace, endpoints and nftables tables; needs iperf3 (perf for --perf)",
    flags: {
      sizes: custom({ help: "table sizes (endpoints)", value: "N,N", default: "250,1000", shown: "250,1000", parse: (v) => { if (!/^\d+(,\d+)*$/.test(v) || v.split(",").some((x) => Number(x) < 2)) throw new Error("give sizes of at least 2, separated by commas"); return v; } }), // prettier-ignore
      old: text({ help: "also the compiler of the build at DIR (e.g. a copy of dist/ from before a change)", value: "DIR", shown: "none", pattern: /^[^\0]+$/, what: "a directory" }), // prettier-ignore
      rounds: int({ help: "rounds (each runs every condition)", min: 1, max: 100, default: 6 }),
      seconds: int({ help: "seconds per window (iperf3 -t)", min: 1, max: 600, default: 3 }),
      nice: int({ help: "both iperf3 ends under nice -n N (e.g. -10: less noise on a shared machine)", min: -20, max: 19, shown: "none" }), // prettier-ignore
      perf: text({ help: "perf record -a of every window into DIR/<cond>-r<round>.data", value: "DIR", shown: "none", pattern: /^[^\0]+$/, what: "a directory" }), // prettier-ignore
    },
  });
  const sizes = flags.sizes.split(",").map(Number);
  const { rounds, seconds } = flags;
  const perfDir = flags.perf;
  // A higher priority for both ends (e.g. --nice=-10) when other work shares the CPUs.
  const nice = flags.nice === undefined ? undefined : String(flags.nice);
  const niced = nice === undefined ? [] : ["nice", "-n", nice];
  const variants: Variant[] = [
    {
      name: "cur",
      compile: (await import("../src/datapath/compile.js")).compile,
      Reconciler: (await import("../src/datapath/reconcile.js")).Reconciler,
    },
  ];
  const old = flags.old;
  if (old !== undefined)
    variants.push({
      name: "old",
      compile: ((await import(`${old}/src/datapath/compile.js`)) as { compile: Compile }).compile,
      Reconciler: ((await import(`${old}/src/datapath/reconcile.js`)) as Pick<Variant, "Reconciler">)
        .Reconciler,
    });
  const prefix = `my4${randomBytes(3).toString("hex")}`;
  const hosts = new HostTable();
  for (let i = 0; i < 50_000; i++) hosts.set(`10.100.${i >> 8}.${i & 255}`, 256 + (i % 10_000));
  const out = (o: Record<string, unknown>): void => {
    process.stdout.write(JSON.stringify({ ...o, load1m: r1(loadavg()[0] ?? 0) }) + "\n");
  };
  const children: ReturnType<typeof spawn>[] = [];
  try {
    const node = await createNode({
      netns: `${prefix}-node`,
      gateway4: "10.222.255.254",
      podCidr4: "10.222.0.0/16",
    });
    const client = await createEndpoint({
      node,
      name: "c",
      netns: `${prefix}-c`,
      hostIfname: `${prefix}c`,
      ipv4: "10.222.0.1",
    });
    const server = await createEndpoint({
      node,
      name: "s",
      netns: `${prefix}-s`,
      hostIfname: `${prefix}s`,
      ipv4: "10.222.0.2",
    });
    const tables: { cond: string; table: CompiledTable }[] = [];
    for (const v of variants) {
      for (const n of sizes) {
        const name = `mt_${v.name}_${n}`;
        const s = state(n, prefix, hosts);
        const rec = new v.Reconciler({ netns: node.netns, table: name });
        const t0 = performance.now();
        await rec.apply(s);
        rec.stop();
        const table = v.compile(s, { table: name });
        await nft(node.netns, detachScript(table));
        tables.push({ cond: `${v.name}:${n}`, table });
        out({ loaded: name, ms: Math.round(performance.now() - t0) });
      }
    }
    children.push(
      spawn(
        "ip",
        [
          "netns",
          "exec",
          server.netns,
          ...niced,
          "taskset",
          "-c",
          "1",
          "iperf3",
          "-s",
          "-p",
          String(IPERF_PORT),
        ],
        {
          stdio: "ignore",
        },
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    const conds = ["ct", ...tables.map((t) => t.cond)];
    const results = new Map<string, { gbps: number; cpu: number; round: number }[]>(
      conds.map((c) => [c, []]),
    );
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round (a slow drift of the load touches every condition alike).
      const order = conds.map((_, i) => conds[(i + round) % conds.length] as string);
      for (const cond of order) {
        const t = tables.find((x) => x.cond === cond)?.table;
        if (t) await nft(node.netns, attachScript(t));
        const perf =
          perfDir !== undefined
            ? spawn(
                "perf",
                ["record", "-a", "-F", "10000", "-o", `${perfDir}/${cond.replace(":", "-")}-r${round}.data`],
                {
                  stdio: "ignore",
                },
              )
            : undefined;
        const r = await runRaw(
          [
            ...niced,
            "taskset",
            "-c",
            "0",
            "iperf3",
            "-c",
            "10.222.0.2",
            "-p",
            String(IPERF_PORT),
            "-t",
            String(seconds),
            "-J",
          ],
          { netns: client.netns, timeoutMs: (seconds + 20) * 1000 },
        );
        if (perf) {
          perf.kill("SIGINT");
          await new Promise((res) => perf.on("exit", res));
        }
        if (t) await nft(node.netns, detachScript(t));
        const j = JSON.parse(r.stdout || "{}") as {
          end?: {
            sum_received?: { bits_per_second: number; bytes: number; seconds: number };
            cpu_utilization_percent?: { host_total: number; remote_total: number };
          };
        };
        const sum = j.end?.sum_received;
        const cpu = j.end?.cpu_utilization_percent;
        if (!sum || !cpu) throw new Error(`iperf3 failed: ${r.stderr || r.stdout.slice(0, 300)}`);
        const w = {
          gbps: sum.bits_per_second / 1e9,
          cpu: (((cpu.host_total + cpu.remote_total) / 100) * sum.seconds) / (sum.bytes / 1e9),
          round,
        };
        results.get(cond)?.push(w);
        out({ round, cond, gbps: r1(w.gbps), cpuSecPerGB: Math.round(w.cpu * 1000) / 1000 });
      }
    }
    const ref = tables[0]?.cond ?? "ct";
    for (const cond of conds) {
      const ws = results.get(cond) ?? [];
      const refs = results.get(ref) ?? [];
      const cpuRatios = ws.map((w, i) => (refs[i]?.cpu ?? NaN) / w.cpu);
      const gbpsRatios = ws.map((w, i) => w.gbps / (refs[i]?.gbps ?? NaN));
      const r3 = (x: number): number => Math.round(x * 1000) / 1000;
      out({
        summary: cond,
        against: ref,
        cpuSecPerGB: r3(median(ws.map((w) => w.cpu))),
        gbps: r1(median(ws.map((w) => w.gbps))),
        cpuRatio: r3(median(cpuRatios)),
        cpuRatioSpread: [r3(Math.min(...cpuRatios)), r3(Math.max(...cpuRatios))],
        gbpsRatio: r3(median(gbpsRatios)),
      });
    }
  } finally {
    for (const c of children) c.kill();
    await cleanupPrefix(`${prefix}-`);
  }
}

await main();
