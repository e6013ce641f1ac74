/**
 * Benchmark of the flow pipeline without the kernel: synthetic NFLOG
 * datagrams (as the kernel batches them) through netlink parsing, packet
 * decoding, enrichment, the filter, the ring and the metrics.
 *
 *   node dist/bench/flows.js [events]   -> one JSON line
 *
 * Targets: >= 50,000 flow events/s ingested (issue #4); >= 100,000 per CPU-second through
 * decode, enrich and filter (issue #14: `eventsPerCpuSec`, the figure a loaded machine does not
 * distort). Session 12 took the per-flow objects that live in the ring out of the pipeline
 * (shared endpoints, rules, flags and addresses; ring slots in place; flows sized by their
 * constructor): 60,283-65,033 -> 115,087-126,555 per CPU-second, interleaved, load 13. The lookup
 * below keeps an identity's label list, as the agent's does. The kernel-side rate
 * (netlink socket -> child -> parent) is measured by the root test
 * test/observe/nflog.test.ts, which prints it.
 */
import type { FlowLookup } from "../src/observe/enrich.js";
import { FlowEnricher } from "../src/observe/enrich.js";
import { compileFilter } from "../src/observe/filter.js";
import { FlowMetrics } from "../src/observe/metrics.js";
import { NFULNL_MSG_PACKET, parseNetlink } from "../src/observe/nflog-msg.js";
import { FlowRing } from "../src/observe/ring.js";
import { benchArgs } from "./cli.js";

function attr(type: number, value: Buffer): Buffer {
  const b = Buffer.alloc((4 + value.length + 3) & ~3);
  b.writeUInt16LE(4 + value.length, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}

/** One NFULNL_MSG_PACKET: a TCP SYN from 10.0.<i> to endpoint <ep>, logged with `prefix`. */
function message(i: number, ep: number, prefix: string, seq: number): Buffer {
  const pkt = Buffer.alloc(40);
  pkt.set([0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, (i >> 8) & 0xff, i & 0xff, 10, 1, 0, ep]);
  pkt.writeUInt16BE(30000 + (i % 30000), 20);
  pkt.writeUInt16BE(80 + (i % 4), 22);
  pkt[33] = 0x02; // SYN
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0, 0);
    return b;
  };
  const body = Buffer.concat([
    Buffer.from([2, 0, 0, 1]),
    attr(1, Buffer.from([0x08, 0, 1, 0])),
    attr(2, u32(1000 + (i % 50))),
    attr(9, pkt),
    attr(10, Buffer.from(prefix + "\0")),
    attr(12, u32(seq)),
  ]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(NFULNL_MSG_PACKET, 4);
  return Buffer.concat([h, body]);
}

const LABELS = ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"];
const NAMES = new Map([["10.1.0.3", ["api.example.com"]]]);
// As the agent's (agent/flow-lookup.ts): an identity's label texts are rendered once and kept.
const PEER_LABELS = Array.from({ length: 50 }, (_, i) => [`k8s:app=client${i}`]);
const lookup: FlowLookup = {
  endpointById: (id) => ({ name: `web-${id}`, namespace: "default", labels: LABELS, identity: 2000 + id }),
  identityById: (id) => ({ labels: PEER_LABELS[id % 50] as string[] }),
  ipIdentity: () => undefined,
  // As the agent's: a map lookup per address, a MapState lookup per policy verdict (cost stood in).
  namesOfIp: (ip) => NAMES.get(ip),
  matchTypeOf: (q) => (q.proto === 6 ? "L3-L4" : "L4-Only"),
  ruleById: (id) => ({
    policy: { kind: "CiliumNetworkPolicy", name: `p${id}`, namespace: "default" },
    path: "spec.ingressDeny[0]",
  }),
};

/** `ringCapacity`: the agent's default --flow-buffer (16,384); the ring's records are what GC walks. */
export async function runFlowBench(
  events = 200_000,
  ringCapacity = 16_384,
): Promise<Record<string, unknown>> {
  const prefixes = ["mbr:d:e1:in:r7", "mbr:d:e2:in:def", "mbr:a:e3:out:r4", "mbr:d:e4:out:spoof"];
  // 16 events per datagram, as the reader configures the kernel (qthreshold 16).
  const datagrams: Buffer[] = [];
  for (let i = 0; i < events; i += 16) {
    const msgs = [];
    for (let k = i; k < Math.min(i + 16, events); k++)
      msgs.push(message(k, (k % 4) + 1, prefixes[k % 4] as string, k));
    datagrams.push(Buffer.concat(msgs));
  }
  const enricher = new FlowEnricher({ lookup, nodeName: "bench", nodeLabels: ["zone=a"] });
  const filter = compileFilter({ denylist: [{ destination_port: ["83"] }] });
  const ring = new FlowRing({ capacity: ringCapacity, nodeName: "bench" });
  const metrics = new FlowMetrics();
  let seqNext = 0;
  let lost = 0;
  let passed = 0;

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const now = Date.now();
  for (let n = 0; n < events; n += 16) {
    const d = datagrams[(n / 16) % datagrams.length] as Buffer;
    for (const ev of parseNetlink(d, now).events) {
      if (ev.seq !== undefined) {
        if (ev.seq !== 0) lost += (ev.seq - seqNext) >>> 0; // seq restarts at 0 when the set replays
        seqNext = ev.seq + 1;
      }
      const flow = enricher.enrich(ev);
      if (flow === undefined) continue;
      metrics.observeFlow(flow);
      if (!filter(flow)) continue;
      ring.pushFlow(flow, ev.timestampMs);
      passed++;
    }
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await metrics.registry.metrics(); // a scrape, to be sure the counters are consistent
  const st = ring.stats();
  return {
    bench: "flows",
    events,
    eventsPerSec: Math.round(events / (ms / 1000)),
    cpuMsPer100k: +(((cpu.user + cpu.system) / 1000) * (100_000 / events)).toFixed(1),
    /** Events per second of this process's CPU time: the figure a loaded machine does not distort. */
    eventsPerCpuSec: Math.round(events / ((cpu.user + cpu.system) / 1e6)),
    wallMs: Math.round(ms),
    ringCapacity,
    passedFilter: passed,
    kernelLost: lost,
    ringOverwritten: st.overwritten,
    ringLostByFollowers: st.lostByFollowers,
    undecodable: enricher.stats.undecodable,
    targetEventsPerSec: 50_000,
  };
}

if (process.argv[1]?.endsWith("flows.js")) {
  const { args } = benchArgs({
    script: "flows",
    runner: "flows",
    measures: "The flow pipeline without the kernel: synthetic NFLOG datagrams through netlink parsing, decoding, enrichment, the filter, the ring and the metrics; events/s wall and per CPU-second. One JSON line.", // prettier-ignore
    root: false,
    args: {
      usage: "[events]",
      help: "how many flow events (default 200000)",
      min: 0,
      max: 1,
      check: (a) =>
        a.length === 0 || (/^\d+$/.test(a[0] ?? "") && Number(a[0]) > 0)
          ? undefined
          : `${a[0]}: give the events as a positive whole number`,
    },
    flags: {},
  });
  runFlowBench(args[0] === undefined ? undefined : Number(args[0])).then((r) =>
    console.log(JSON.stringify(r)),
  );
}
