// Endpoint create, re-create (adoption), batch cold start and agent restart, in throwaway
// namespaces (prefix mbt....rn). Needs root. Prints one JSON line per run; asserts nothing.
//
//   node scripts/bench-endpoint-create.mjs [--count N] /work/main/dist dist
//       createEndpoint one by one up to N (default 100): p50/p99 of the first 100 and of the
//       last 100 (with N-100 endpoints already there), then re-create (adoption) of the last 100.
//   node scripts/bench-endpoint-create.mjs --count 1000 --batch 1,2,4,8 dist
//       createEndpoints (endpoint-batch.ts) of N endpoints on a fresh node, per concurrency.
//   node scripts/bench-endpoint-create.mjs --count 1000 --agent dist
//       an in-process agent: N endpoints through it (p50/p99 first/last 100, nftables included),
//       restart (time, kernel ops, processes spawned before it serves), then a cold start after
//       every namespace is gone (time).
import { createRequire, syncBuiltinESMExports } from "node:module";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [v] = args.splice(i, 2).slice(1);
  return v;
};
const flag = (name) => {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
};
const count = Number(opt("--count") ?? 100);
const batch = opt("--batch");
const agentMode = flag("--agent");
const q = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return Number(s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)].toFixed(1));
};
const ms = (a) => ({ n: a.length, p50: q(a, 0.5), p99: q(a, 0.99) });
const cp = createRequire(import.meta.url)("node:child_process");
/** Counts the processes spawned while f runs. */
async function spawns(f) {
  const seen = [];
  const orig = cp.spawn;
  cp.spawn = (cmd, a, ...rest) => (seen.push([cmd, ...a]), orig(cmd, a, ...rest));
  syncBuiltinESMExports();
  try {
    await f();
  } finally {
    cp.spawn = orig;
    syncBuiltinESMExports();
  }
  return seen;
}
const octets = (i) => `${10 + ((i + 10) >> 8)}.${(i + 10) & 255}`;

for (const dist of args) {
  const base = new URL(`file://${dist.startsWith("/") ? dist : `${process.cwd()}/${dist}`}/`);
  const mod = async (p) => import(new URL(p, base).href);
  const { createNode, createEndpoint } = await mod("src/datapath/endpoint.js");
  const { cleanupPrefix } = await mod("src/datapath/netns.js");
  const prefix = "mbt" + Math.random().toString(36).slice(2, 6) + "rn";
  const nodeP = {
    netns: `${prefix}-node`,
    gateway4: "10.202.0.1",
    gateway6: "fd00:202::1",
    podCidr4: "10.202.0.0/16",
    podCidr6: "fd00:202::/112",
  };
  const ep = (node, i) => ({
    node,
    name: `e${i}`,
    netns: `${prefix}-e${i}`,
    hostIfname: `${prefix}h${i}`,
    ipv4: `10.202.${octets(i)}`,
    ipv6: `fd00:202::${(i + 10).toString(16)}`,
  });
  try {
    if (batch) {
      const { createEndpoints } = await mod("src/datapath/endpoint-batch.js");
      for (const c of batch.split(",").map(Number)) {
        const node = await createNode(nodeP);
        const eps = Array.from({ length: count }, (_, i) => ep(node, i));
        const t0 = performance.now();
        const r = await createEndpoints(eps, { concurrency: c });
        const s = (performance.now() - t0) / 1000;
        console.log(
          JSON.stringify({
            dist,
            batch: count,
            concurrency: c,
            seconds: Number(s.toFixed(1)),
            ...r,
            failed: r.failed.length,
          }),
        );
        await cleanupPrefix(prefix + "-");
      }
    } else if (agentMode) {
      const { startAgent } = await mod("src/agent/run.js");
      const pino = (await import("pino")).default;
      const dir = await mkdtemp(join(tmpdir(), "membrane-bench-eps-"));
      const logs = [];
      const logger = pino({ level: "info" }, { write: (l) => logs.push(JSON.parse(l)) });
      const o = {
        stateDir: join(dir, "state"),
        socketPath: join(dir, "agent.sock"),
        nodeNetns: `${prefix}-node`,
        netnsPrefix: `${prefix}-`,
        podCidr4: "10.203.0.0/16",
        table: `m${prefix}`,
        logGroup: 1,
        engine: {},
        logLevel: "info",
        resyncMs: 0,
      };
      try {
        let running = await startAgent(o, logger);
        const times = [];
        for (let i = 0; i < count; i++) {
          const t0 = performance.now();
          await running.agent.createEndpointRequest({
            name: `e${i}`,
            namespace: "default",
            labels: { app: `a${i % 50}` },
          });
          times.push(performance.now() - t0);
        }
        await running.stop();
        const from = logs.length;
        let t0 = performance.now();
        const spawned = await spawns(async () => (running = await startAgent(o, logger)));
        const restartS = (performance.now() - t0) / 1000;
        const started = logs.slice(from).find((l) => l.msg === "agent started");
        const ipSpawns = spawned.filter((a) => !a.includes("nft")).length;
        await running.stop();
        await cleanupPrefix(prefix + "-");
        t0 = performance.now();
        running = await startAgent(o, logger);
        const coldS = (performance.now() - t0) / 1000;
        await running.stop();
        console.log(
          JSON.stringify({
            dist,
            agentEndpoints: count,
            createMs: { first100: ms(times.slice(0, 100)), last100: ms(times.slice(-100)) },
            restart: {
              seconds: Number(restartS.toFixed(2)),
              kernelOps: started?.kernelOps,
              spawned: spawned.length,
              nonNftSpawns: ipSpawns,
            },
            coldStartSeconds: Number(coldS.toFixed(1)),
          }),
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    } else {
      const node = await createNode(nodeP);
      const create = [];
      const eps = [];
      for (let i = 0; i < count; i++) {
        const p = ep(node, i);
        const t0 = performance.now();
        await createEndpoint(p);
        create.push(performance.now() - t0);
        eps.push(p);
      }
      const again = [];
      for (const p of eps.slice(-100)) {
        const t0 = performance.now();
        await createEndpoint(p);
        again.push(performance.now() - t0);
      }
      console.log(
        JSON.stringify({
          dist,
          count,
          createMs: { first100: ms(create.slice(0, 100)), last100: ms(create.slice(-100)) },
          recreateUnchangedMs: ms(again),
        }),
      );
    }
  } finally {
    await cleanupPrefix(prefix + "-");
  }
}
