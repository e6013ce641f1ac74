/**
 * Hubble's Observer API and the relay, measured (issue 14 item 7). One JSON line per section:
 *
 *   encode    per-flow cost of a GetFlowsResponse: the direct writer vs protojson + fromJson/toBinary,
 *             interleaved rounds in one process
 *   grpc      flows/s from an agent's Observer API (HubbleServer over a ring, unix socket) to a client
 *             that only counts, direct vs reflective encoding, interleaved
 *   relay     3 simulated nodes (another process) x 20,000 flows/s each through `membrane relay`'s merge
 *             to a counting client: what arrived, what was counted lost (the agents' lost_events, the
 *             relay's late/overflow), and what is unaccounted (must be 0)
 *   pipeline  decode + enrich + filter + ring + metrics (bench/flows.ts) against >= 100,000 flows/s per agent
 *
 *   npm run bench -- hubble            node dist/bench/hubble.js [--seconds=10] [--rate=20000] [--nodes=3]
 *                                      [--only=relay|grpc|pipeline]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromBinary, fromJson, toBinary, type Message } from "@bufbuild/protobuf";
import { Client, credentials } from "@grpc/grpc-js";
import { pino } from "pino";
import { encodeRecord } from "../src/observe/hubble/encode.js";
import { hubbleRecord } from "../src/observe/hubble/json.js";
import { getFlowsRequestOf } from "../src/observe/hubble/request.js";
import { hubbleSchema } from "../src/observe/hubble/schema.js";
import { HubbleServer } from "../src/observe/hubble/server.js";
import { observerService } from "../src/observe/hubble/service.js";
import type { FlowRecord } from "../src/observe/flow.js";
import { FlowRing } from "../src/observe/ring.js";
import { scanResponse, type RawResponse } from "../src/relay/raw.js";
import { FLOW_CONTROL_WINDOW } from "../src/observe/hubble/client.js";
import { startRelay } from "../src/relay/relay.js";
import { runFlowBench } from "./flows.js";
import { benchFlow } from "./hubble-nodes.js";
import { benchArgs, choice, int } from "./cli.js";

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const load = (): number => +(loadavg()[0] ?? 0).toFixed(2);

function records(n: number): FlowRecord[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const f = benchFlow(now + i, "n1", i);
    return { flow: f, node_name: "n1", time: f.time };
  });
}

function encodeSection(): Record<string, unknown> {
  const s = hubbleSchema();
  const recs = records(5000);
  const reflective = (r: FlowRecord): Uint8Array =>
    toBinary(
      s.GetFlowsResponse,
      fromJson(s.GetFlowsResponse, hubbleRecord(r) as never, { registry: s.registry }),
    );
  const direct = (r: FlowRecord): Uint8Array => encodeRecord(r) as Uint8Array;
  const us: Record<"direct" | "reflective", number[]> = { direct: [], reflective: [] };
  for (let round = 0; round < 6; round++)
    for (const [name, f] of [
      ["direct", direct],
      ["reflective", reflective],
    ] as const) {
      const t0 = performance.now();
      let bytes = 0;
      for (const r of recs) bytes += f(r).length;
      if (bytes === 0) throw new Error("nothing encoded");
      if (round > 0) us[name].push(((performance.now() - t0) * 1000) / recs.length); // round 0 warms up
    }
  const d = median(us.direct);
  const r = median(us.reflective);
  return {
    bench: "hubble-encode",
    flows: recs.length,
    directUsPerFlow: +d.toFixed(2),
    reflectiveUsPerFlow: +r.toFixed(2),
    speedup: +(r / d).toFixed(1),
    load: load(),
  };
}

/** Reads a whole history GetFlows from `target`, counting; resolves with flows received. */
function countFlows(
  target: string,
  follow: boolean,
  onRaw?: (r: RawResponse) => void,
  signal?: AbortSignal,
): Promise<number> {
  const m = observerService().GetFlows;
  // A receive window as grpc-go grows one (hubble observe): HTTP/2's 64 KiB would measure round trips.
  const c = new Client(target, credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 << 20,
    "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
  });
  return new Promise((resolve, reject) => {
    let n = 0;
    const call = c.makeServerStreamRequest(
      m.path,
      m.requestSerialize,
      (b: Buffer) => scanResponse(b),
      getFlowsRequestOf({ filter: {}, follow, number: follow ? undefined : 1_000_000 } as never),
    );
    signal?.addEventListener("abort", () => call.cancel(), { once: true });
    call.on("data", (r: RawResponse) => {
      if (r.kind === "flow") n++;
      onRaw?.(r);
    });
    call.on("end", () => (c.close(), resolve(n)));
    call.on("error", (e) => (c.close(), signal?.aborted ? resolve(n) : reject(e)));
  });
}

async function grpcSection(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), "hrl-bench-"));
  const ring = new FlowRing({ capacity: 30_000, nodeName: "n1" });
  for (const r of records(30_000)) if ("flow" in r) ring.pushFlow(r.flow);
  const rates: Record<"direct" | "reflective", number[]> = { direct: [], reflective: [] };
  try {
    for (let round = 0; round < 3; round++)
      for (const mode of ["direct", "reflective"] as const) {
        const socket = join(dir, `${mode}-${round}.sock`);
        const server = new HubbleServer({
          source: { nodeName: "n1", version: "bench", ring },
          socketPath: socket,
          reflectiveEncoding: mode === "reflective",
        });
        await server.start();
        const t0 = performance.now();
        const n = await countFlows(`unix:${socket}`, false);
        rates[mode].push(n / ((performance.now() - t0) / 1000));
        await server.stop();
      }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const d = median(rates.direct);
  const r = median(rates.reflective);
  return {
    bench: "hubble-grpc",
    flows: 30_000,
    directFlowsPerSec: Math.round(d),
    reflectiveFlowsPerSec: Math.round(r),
    speedup: +(d / r).toFixed(1),
    load: load(),
  };
}

async function relaySection(nodes: number, rate: number, seconds: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), "hrl-bench-"));
  const script = fileURLToPath(new URL("./hubble-nodes.js", import.meta.url));
  const child = spawn(process.execPath, [script, dir, String(nodes), String(rate), String(seconds)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let buf = "";
  child.stdout.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  const waitLine = async (f: (l: string) => boolean): Promise<string> => {
    for (;;) {
      const l = lines.find(f);
      if (l !== undefined) return l;
      if (child.exitCode !== null) throw new Error("the simulated nodes exited");
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const relay = await startRelay({
    nodes: {
      peers: Array.from({ length: nodes }, (_, i) => ({
        name: `n${i + 1}`,
        target: `unix:${join(dir, `n${i + 1}.sock`)}`,
        tls: false,
      })),
    },
    socketPath: join(dir, "relay.sock"),
    version: "bench",
    logger: pino({ level: "warn" }),
  }).catch(async (e: unknown) => {
    await waitLine((l) => l === "ready");
    throw e;
  });
  try {
    await waitLine((l) => l === "ready");
    // The relay's health check sees every node (slow on a loaded machine).
    while (relay.pool.peers().some((p) => p.state !== "connected"))
      await new Promise((r) => setTimeout(r, 100));
    const s = hubbleSchema();
    let lostCounted = 0;
    let nodeStatus = 0;
    let received = 0;
    let late = 0;
    let lastTime = -Infinity;
    const ac = new AbortController();
    const cpu0 = process.cpuUsage();
    const counting = countFlows(
      `unix:${join(dir, "relay.sock")}`,
      true,
      (r) => {
        if (r.kind === "node_status") nodeStatus++;
        if (r.kind === "lost_events") {
          const m = fromBinary(s.GetFlowsResponse, r.bytes) as Message & {
            responseTypes: { value: { numEventsLost: bigint } };
          };
          lostCounted += Number(m.responseTypes.value.numEventsLost);
        } else if (r.kind === "flow") {
          received++;
          if (r.timeMs < lastTime) late++;
          else lastTime = r.timeMs;
        }
      },
      ac.signal,
    );
    await new Promise((r) => setTimeout(r, 300)); // the relay's streams to the nodes are open
    child.stdin.write("go\n");
    const t0 = performance.now();
    const report = JSON.parse(await waitLine((l) => l.startsWith("{"))) as {
      pushed: number[];
      cpuSeconds: number;
      ringStats: { lostByFollowers: number }[];
    };
    // Drain: until every pushed flow arrived or was counted lost, or nothing moved for 5 s.
    const pushedAll = report.pushed.reduce((a, b) => a + b, 0);
    let seen = -1;
    let still = performance.now();
    while (received + lostCounted < pushedAll && performance.now() - still < 5000) {
      await new Promise((r) => setTimeout(r, 100));
      if (received + lostCounted !== seen) {
        seen = received + lostCounted;
        still = performance.now();
      }
    }
    const wall = (performance.now() - t0) / 1000;
    ac.abort();
    await counting;
    const cpu = process.cpuUsage(cpu0);
    const pushed = report.pushed.reduce((a, b) => a + b, 0);
    const st = relay.stats();
    return {
      bench: "hubble-relay",
      nodes,
      ratePerNode: rate,
      seconds,
      pushed,
      received,
      lostCountedByAgents: lostCounted,
      unaccounted: pushed - received - lostCounted,
      agentsLappedFollowers: report.ringStats.map((r) => r.lostByFollowers),
      nodeStatusEvents: nodeStatus,
      relayLate: st.late,
      relayOverflow: st.overflow,
      outOfOrderAtClient: late,
      receivedPerSec: Math.round(received / wall),
      relayAndClientCpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
      nodesCpuSeconds: report.cpuSeconds,
      load: load(),
    };
  } finally {
    await relay.stop();
    child.stdin.end();
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Decode + enrich + filter + ring + metrics per agent: 5 rounds of 200,000 events (the first warms
 * up), median wall rate and median rate per CPU-second (what a loaded machine leaves comparable).
 */
async function pipelineSection(): Promise<Record<string, unknown>> {
  const wall: number[] = [];
  const cpu: number[] = [];
  const load0 = load();
  for (let round = 0; round < 5; round++) {
    const r = (await runFlowBench(200_000)) as { eventsPerSec: number; eventsPerCpuSec: number };
    if (round === 0) continue;
    wall.push(r.eventsPerSec);
    cpu.push(r.eventsPerCpuSec);
  }
  return {
    bench: "hubble-pipeline",
    events: 200_000,
    rounds: wall.length,
    eventsPerSec: median(wall),
    eventsPerSecRounds: wall,
    eventsPerCpuSec: median(cpu),
    targetEventsPerSec: 100_000,
    loadBefore: load0,
    load: load(),
  };
}

const SPEC = {
  script: "hubble",
  runner: "hubble",
  measures: "Hubble's Observer API and the relay: the per-flow cost of encoding (direct writer vs reflective), flows/s over gRPC from an agent's Observer API, simulated nodes through the relay's merge (arrived, counted lost, unaccounted), and the flow pipeline. One JSON line per section.", // prettier-ignore
  root: false as const,
  flags: {
    seconds: int({ help: "seconds the relay's simulated nodes push", min: 1, max: 3600, default: 10 }),
    rate: int({ help: "flows/s per simulated node", min: 1, max: 10_000_000, default: 20_000 }),
    nodes: int({ help: "simulated nodes behind the relay", min: 1, max: 100, default: 3 }),
    only: choice({
      help: "one section only",
      choices: ["relay", "grpc", "pipeline"],
      shown: "every section",
    }),
  },
};

async function main(): Promise<void> {
  const { flags } = benchArgs(SPEC);
  const only = flags.only;
  const relay = (): ReturnType<typeof relaySection> => relaySection(flags.nodes, flags.rate, flags.seconds);
  if (only === "relay") {
    console.log(JSON.stringify(await relay()));
    return;
  }
  if (only === "pipeline") {
    console.log(JSON.stringify(await pipelineSection()));
    return;
  }
  if (only === "grpc") {
    console.log(JSON.stringify(await grpcSection()));
    return;
  }
  console.log(JSON.stringify(encodeSection()));
  console.log(JSON.stringify(await grpcSection()));
  console.log(JSON.stringify(await relay()));
  console.log(JSON.stringify(await pipelineSection()));
}

if (process.argv[1]?.endsWith("hubble.js")) void main().then(() => process.exit(0));
