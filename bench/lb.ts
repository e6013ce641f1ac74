/**
 * Services in the kernel (needs root; outside CI):
 * `npm run bench -- lb [--rounds=4] [--seconds=5] [--services=10000] [--changes=10] [--change-only] [--no-whole]`
 * (`node dist/bench/lb.js --help`: every flag with its default)
 *
 * 1. ClusterIP vs direct to the backend, side by side in one run (ABBA rounds, paired ratios):
 *    TCP throughput (iperf3), request/response rate on one connection, and new connections
 *    per second (a connect/close loop). Both conditions run with the policy table (open) and
 *    the LB table loaded; only the address the client dials differs.
 * 2. Cost of changing one backend among N services x 10 backends, the agent's incremental
 *    way (through the agent's own nfnetlink socket, and through the writer process as before)
 *    against computing the whole state (side by side); and of draining one backend (10 -> 9).
 *
 * One JSON line per figure. Everything runs in scratch namespaces with the prefix hlbb + random.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { createEndpoint, createNode } from "../src/datapath/endpoint.js";
import { cleanupPrefix } from "../src/datapath/netns.js";
import { LbTable } from "../src/datapath/lb-table.js";
import type { LbFrontend } from "../src/datapath/lb-types.js";
import { Reconciler } from "../src/datapath/reconcile.js";
import { desiredLb } from "../src/lb/desired.js";
import { LbModel } from "../src/lb/model.js";
import type { LbService, LbSlice } from "../src/lb/types.js";
import { abTraffic, IPERF_PORT, median, parsePin, RR_PORT, r1, trafficFigures } from "./traffic.js";
import { benchArgs, flag, int } from "./cli.js";

const out = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: "lb", ...o }));
const self = fileURLToPath(import.meta.url);
const VIP = "10.96.0.100";
const CONN_PORT = 5400;

const SPEC = {
  script: "lb",
  runner: "lb",
  measures: "Services in the kernel: ClusterIP vs direct to the backend, side by side (ABBA rounds, paired ratios: TCP throughput, request/response rate, new connections/s); and the cost of changing one backend among N services x 10 backends, incremental vs the whole state, and of draining one. One JSON line per figure.", // prettier-ignore
  root: "scratch namespaces (hlbb<hex>) and nftables tables; needs iperf3",
  notes: ["Internal modes (run by the bench itself in a namespace): --conn-server; --conn-client HOST MS."],
  args: { usage: "[HOST MS]", help: "with --conn-client only", min: 0, max: 2 },
  flags: {
    rounds: int({ help: "ABBA rounds of the ClusterIP figures", min: 1, max: 100, default: 4 }),
    seconds: int({ help: "seconds per traffic window", min: 1, max: 600, default: 5 }),
    services: int({ help: "services for the backend-change figure", min: 1, max: 100_000, default: 10_000 }),
    changes: int({ help: "backend changes timed", min: 1, max: 10_000, default: 10 }),
    "change-only": flag("only the backend-change figure (no traffic)"),
    "no-whole": flag("leave out computing the whole state beside the incremental change"),
    "conn-server": flag("internal: a server that closes each connection"),
    "conn-client": flag("internal: open connections to HOST one after another for MS ms, print the rate"),
  },
};

/** Child modes: a server that closes each connection; a client that opens them one after another. */
async function childMode(
  flags: { "conn-server": boolean; "conn-client": boolean },
  args: readonly string[],
): Promise<boolean> {
  if (flags["conn-server"]) {
    net.createServer((s) => s.end()).listen(CONN_PORT, () => console.log("ready"));
    return true;
  }
  if (flags["conn-client"]) {
    const [host = "", ms = "3000"] = args;
    const end = Date.now() + Number(ms);
    let n = 0;
    while (Date.now() < end) {
      await new Promise<void>((resolve, reject) => {
        const s = net.connect({ host, port: CONN_PORT }, () => {
          n++;
          s.destroy();
          resolve();
        });
        s.on("error", reject);
      });
    }
    console.log(String(n / (Number(ms) / 1000)));
    process.exit(0);
  }
  return false;
}

function runIn(netns: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn("ip", ["netns", "exec", netns, ...argv], { stdio: ["ignore", "pipe", "inherit"] });
    let s = "";
    c.stdout.on("data", (d: Buffer) => (s += d.toString()));
    c.on("exit", (code) =>
      code === 0 ? resolve(s.trim()) : reject(new Error(`${argv.join(" ")}: exit ${code}`)),
    );
  });
}

async function clusterIp(prefix: string, rounds: number, seconds: number): Promise<void> {
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.221.0.1",
    podCidr4: "10.221.0.0/24",
  });
  const client = { ip: "10.221.0.2", ifname: `${prefix}c`, netns: `${prefix}-client` };
  const backend = { ip: "10.221.0.3", ifname: `${prefix}s`, netns: `${prefix}-server` };
  for (const e of [client, backend])
    await createEndpoint({ node, name: e.netns, netns: e.netns, hostIfname: e.ifname, ipv4: e.ip });
  const open = { enforced: false, segments: [] };
  await new Reconciler({ netns: node.netns, table: "membrane" }).apply({
    hostIdentity: 1,
    rules: [],
    ipcache: [
      { prefix: `${client.ip}/32`, identity: 1001 },
      { prefix: `${backend.ip}/32`, identity: 1002 },
    ],
    endpoints: [client, backend].map((e, i) => ({
      id: i + 1,
      name: e.netns,
      hostIfname: e.ifname,
      ipv4: e.ip,
      identity: 1001 + i,
      ingress: open,
      egress: open,
    })),
  });
  const fr = (port: number): LbFrontend => ({
    ip: VIP,
    proto: 6,
    port,
    backends: [{ ip: backend.ip, port }],
  });
  await new LbTable({ netns: node.netns }).apply({ frontends: [fr(IPERF_PORT), fr(RR_PORT), fr(CONN_PORT)] });
  // The address the client dials: the backend's in "direct", the ClusterIP in "clusterip".
  let target = backend.ip;
  const server = { netns: backend.netns, get ip(): string { return target; } }; // prettier-ignore
  const ab = await abTraffic({
    client,
    server,
    rounds,
    seconds,
    pin: parsePin(undefined),
    conditions: ["direct", "clusterip"],
    setCondition: (cond) => Promise.resolve(void (target = cond === "direct" ? backend.ip : VIP)),
  });
  for (const f of trafficFigures(ab, "direct", "clusterip", {
    seconds,
    rounds,
    note: "None = direct to the backend, Membrane = through the ClusterIP",
  }))
    out(f);
  // New connections per second, interleaved (ABBA), one connect/close loop at a time.
  const srv = spawn("ip", ["netns", "exec", backend.netns, process.execPath, self, "--conn-server"], { stdio: ["ignore", "pipe", "inherit"] }); // prettier-ignore
  try {
    await new Promise((r) => srv.stdout.once("data", r));
    const rate: Record<string, number[]> = { direct: [], clusterip: [] };
    const ratios: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? ["direct", "clusterip"] : ["clusterip", "direct"];
      const got: Record<string, number> = {};
      for (const c of order) {
        const host = c === "direct" ? backend.ip : VIP;
        got[c] = Number(
          await runIn(client.netns, [process.execPath, self, "--conn-client", host, String(seconds * 1000)]),
        );
        rate[c]?.push(got[c]);
      }
      ratios.push((got["clusterip"] ?? 0) / (got["direct"] ?? 1));
    }
    out({
      figure: "tcp-connections-per-second",
      rounds,
      seconds,
      direct: Math.round(median(rate["direct"] ?? [])),
      clusterip: Math.round(median(rate["clusterip"] ?? [])),
      ratio: Math.round(median(ratios) * 1000) / 1000,
      pairRatios: ratios.map((x) => Math.round(x * 1000) / 1000),
      load1m: r1(loadavg()[0] ?? 0),
    });
  } finally {
    srv.kill();
  }
}

/** Service i (ns "b", name "s<i>") and its slice, whose endpoint 0 has port 8080 + variant. */
function benchService(i: number, variant: number): { svc: LbService; slice: LbSlice } {
  const ip = (n: number): string => `10.${100 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
  const be = (b: number): string => {
    const n = i * 10 + b;
    return `172.${16 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
  };
  return {
    svc: {
      namespace: "b",
      name: `s${i}`,
      labels: {},
      type: "ClusterIP",
      clusterIP: ip(i + 1),
      ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 8080 }],
      algorithm: "random",
    },
    slice: {
      namespace: "b",
      name: `s${i}-1`,
      service: `s${i}`,
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      endpoints: Array.from({ length: 10 }, (_, b) => ({
        addresses: [b === 0 && variant > 0 ? `192.168.${variant >> 8}.${variant & 255}` : be(b)],
        ready: true,
        serving: true,
        terminating: false,
      })),
    },
  };
}

/**
 * One backend change among N services x 10 backends, two ways side by side (interleaved):
 * "incremental" is what the agent does (LbModel: the changed slice's service recomputed,
 * LbTable.update: that service's element delta); "whole" is the previous way (the whole
 * desired state computed, LbTable.apply compiling and diffing it all). Each in its own table.
 */
/** A full collection between timed sections when node runs with --expose-gc (npm run bench passes it). */
const gc = async (): Promise<void> => {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 300)); // its concurrent sweeping ends before the timing starts
};

async function backendChange(
  prefix: string,
  services: number,
  changes: number,
  withWhole: boolean,
): Promise<void> {
  const node = await createNode({
    netns: `${prefix}-lbnode`,
    gateway4: "10.222.0.1",
    podCidr4: "10.222.0.0/24",
  });
  const inc = new LbTable({ netns: node.netns, table: "membrane_lb" });
  // The same deltas through the writer process (membrane-nfnl), the way before the in-process socket.
  const proc = new LbTable({ netns: node.netns, table: "hlbb_proc", writer: "process" });
  const whole = new LbTable({ netns: node.netns, table: "hlbb_whole" });
  const model = new LbModel();
  const all = Array.from({ length: services }, (_, i) => benchService(i, 0));
  for (const { svc, slice } of all) {
    model.setService(`b/${svc.name}`, svc);
    model.setSlice(`b/${slice.name}`, slice);
  }
  let t0 = performance.now();
  const first = model.flush();
  const full = await inc.update(first);
  const loadMs = performance.now() - t0;
  await proc.update(first);
  await whole.apply(
    desiredLb(
      all.map((x) => x.svc),
      [],
      all.map((x) => x.slice),
    ).state,
  );
  if (
    !(await runIn(node.netns, ["nft", "list", "set", "inet", "membrane_lb", "front4"])).includes("10.100.0.1")
  )
    throw new Error("the table was not loaded");
  const one: number[] = [];
  const kernel: number[] = [];
  const viaProc: number[] = [];
  const kernelProc: number[] = [];
  const old: number[] = [];
  let writer = "";
  let writerProc = "";
  const slices = all.map((x) => x.slice);
  for (let i = 1; i <= changes; i++) {
    // The one slice that changes: endpoint 0 of service 0 gets another address (one backend replaced).
    const changed = benchService(0, i).slice;
    slices[0] = changed;
    await gc(); // the whole way leaves ~GBs of garbage: its collection is not the next change's cost
    t0 = performance.now();
    model.setSlice(`b/${changed.name}`, changed);
    const changes = model.flush();
    const nodeMs = performance.now() - t0;
    // The same change through both writers, in alternating order (the socket first in odd rounds).
    for (const way of i % 2 === 1 ? ["socket", "process"] : ["process", "socket"]) {
      await gc();
      t0 = performance.now();
      const r = await (way === "socket" ? inc : proc).update(changes);
      const ms = nodeMs + performance.now() - t0;
      if (r.mode !== "delta" || r.ops !== 2)
        throw new Error(`${way}: expected a 2-element delta, got ${r.mode} ${r.ops}`);
      if (way === "socket") {
        one.push(ms);
        kernel.push(r.kernelMs);
        writer = r.writer ?? "";
      } else {
        viaProc.push(ms);
        kernelProc.push(r.kernelMs);
        writerProc = r.writer ?? "";
      }
    }
    if (!withWhole) continue;
    await gc();
    t0 = performance.now();
    const w = await whole.apply(
      desiredLb(
        all.map((x) => x.svc),
        [],
        slices,
      ).state,
    );
    old.push(performance.now() - t0);
    if (w.mode !== "delta" || w.ops !== 2)
      throw new Error(`whole: expected a 2-element delta, got ${w.mode} ${w.ops}`);
  }
  // Draining: service 0's endpoint 1 becomes terminating (10 -> 9 backends: a chain n9 comes, so `nft`).
  const base = benchService(0, changes).slice;
  const drained: LbSlice = { ...base, endpoints: base.endpoints.map((e, b) => (b === 1 ? { ...e, ready: false, terminating: true } : e)) }; // prettier-ignore
  t0 = performance.now();
  model.setSlice(`b/${drained.name}`, drained);
  const d = await inc.update(model.flush());
  const drainMs = performance.now() - t0;
  inc.stop();
  proc.stop();
  whole.stop();
  out({
    figure: "backend-change",
    services,
    backendsPerService: 10,
    elements: full.ops,
    fullLoadMs: Math.round(loadMs),
    oneBackendChangeMsMedian: r1(median(one)),
    oneBackendChangeMs: one.map(r1),
    kernelWriteMsMedian: r1(median(kernel)),
    nodeSideMsMedian: Math.round(median(one.map((x, i) => x - (kernel[i] ?? 0))) * 1000) / 1000,
    kernelWriteMs: kernel.map(r1),
    writer,
    writerProcessMsMedian: r1(median(viaProc)),
    writerProcessMs: viaProc.map(r1),
    writerProcessKernelWriteMsMedian: r1(median(kernelProc)),
    writerProcess: writerProc,
    wholeStateMsMedian: r1(median(old)),
    wholeStateMs: old.map(r1),
    ratioWholeToIncremental: r1(median(old) / Math.max(median(one), 0.001)),
    drainOneBackendMs: r1(drainMs),
    drainOps: d.ops,
    how: "incremental = LbModel.setSlice + flush (the one service recomputed) + LbTable.update (its element delta, one nf_tables batch through the agent's own nfnetlink socket); writerProcess = the same delta through the membrane-nfnl writer process (the way before); whole = desiredLb over every service + LbTable.apply (compile and diff all); interleaved, one run",
    load1m: r1(loadavg()[0] ?? 0),
  });
}

async function main(): Promise<void> {
  const { flags, args } = benchArgs(SPEC);
  if (await childMode(flags, args)) return;
  const prefix = "hlbb" + randomBytes(2).toString("hex");
  try {
    if (!flags["change-only"]) await clusterIp(prefix, flags.rounds, flags.seconds);
    await backendChange(prefix, flags.services, flags.changes, !flags["no-whole"]);
  } finally {
    await cleanupPrefix(prefix + "-");
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
