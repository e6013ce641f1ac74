/**
 * Restart adoption and cold start of endpoints (needs root), issue 10 item 2:
 * a restarted agent adopts the namespaces and veths that exist without an
 * `ip` process (a spy on child_process.spawn counts them), checks their
 * insides in the background and repairs what differs; an agent that finds
 * its endpoint records but no namespaces creates them in a batch, with the
 * policy loaded into the kernel once. Real traffic after each.
 */
import assert from "node:assert/strict";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { describe, test } from "node:test";
import { cleanupPrefix } from "../../../src/datapath/netns.js";
import { AgentLab, rootSkipReason, SERVER_FROM_CLIENT, T, type LogLine } from "./harness.js";

const skip = rootSkipReason();
const cp = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");

/** Records the argv of every process this test process spawns while `f` runs (exec.ts imports spawn). */
async function spawnsDuring(f: () => Promise<void>): Promise<string[][]> {
  const seen: string[][] = [];
  const orig = cp.spawn;
  cp.spawn = ((cmd: string, args: readonly string[], ...rest: unknown[]) => {
    seen.push([cmd, ...args]);
    return (orig as (...a: unknown[]) => unknown)(cmd, args, ...rest);
  }) as typeof cp.spawn;
  syncBuiltinESMExports();
  try {
    await f();
  } finally {
    cp.spawn = orig;
    syncBuiltinESMExports();
  }
  return seen;
}

/** The command a spawn runs in the end: `ip netns exec NS nft ...` and `nsenter --net=X ip ...` unwrapped. */
function effective(argv: readonly string[]): readonly string[] {
  if (argv[0] === "ip" && argv[1] === "netns" && argv[2] === "exec") return effective(argv.slice(4));
  if (argv[0] === "nice" && argv[1] === "-n") return effective(argv.slice(3)); // background reads
  if (argv[0] === "nsenter")
    return effective(argv.slice(argv.findIndex((a) => !a.startsWith("-") && a !== "nsenter")));
  return argv;
}

async function waitLog(lab: AgentLab, from: number, msg: string): Promise<LogLine> {
  for (let i = 0; i < 1200; i++) {
    const l = lab.logs.slice(from).find((x) => x["msg"] === msg);
    if (l) return l;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no "${msg}" log line: ${JSON.stringify(lab.logs.slice(from))}`);
}

/** server (listens on 80), client (allowed), other (denied). */
async function world(lab: AgentLab): Promise<void> {
  await lab.endpoint("server", { app: "server" }, { tcp: [80] });
  await lab.endpoint("client", { app: "client" });
  await lab.endpoint("other", { app: "other" });
  await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
}

async function verdicts(lab: AgentLab): Promise<string[]> {
  const server = lab.ep("server").ip;
  return [await lab.ep("client").probe.tcp(server, 80, T), await lab.ep("other").probe.tcp(server, 80, T)];
}

describe("agent e2e: endpoint adoption and cold start (root)", { skip: skip ?? false }, () => {
  test("a restart where nothing changed spawns no ip process, verifies in the background with reads only, and traffic still flows", async () => {
    const lab = await AgentLab.start("eps");
    try {
      await world(lab);
      assert.deepEqual(await verdicts(lab), ["ok", "timeout"], "before the restart");
      await lab.stopAgent();
      const from = lab.logs.length;
      let startSpawns: string[][] = [];
      const all = await spawnsDuring(async () => {
        startSpawns = await spawnsDuring(() => lab.startAgent());
        await waitLog(lab, from, "adopted endpoints verified");
      });
      const ipAtStart = startSpawns.filter((a) => effective(a)[0] === "ip");
      assert.deepEqual(ipAtStart, [], "no ip process until the agent serves");
      // And the nfnetlink writer, started idle so that the first change does not wait for it.
      const writer = (a: string[]): boolean =>
        a.some((x) => x.endsWith("nfnl/child.js") || x.endsWith("/membrane-nfnl"));
      assert.ok(
        startSpawns.every((a) => (effective(a)[0] === "nft" && !a.includes("-f")) || writer(a)),
        `only nft reads at start: ${JSON.stringify(startSpawns)}`,
      );
      const started = lab.logs.slice(from).find((l) => l["msg"] === "agent started");
      assert.equal(started?.["kernelOps"], 0);
      const verified = await waitLog(lab, from, "adopted endpoints verified");
      assert.deepEqual([verified["checked"], verified["repaired"]], [3, 0]);
      // The background check reads (ip -j -batch for the node, and one `sh -s` that reads the
      // endpoints' namespaces, readNetnsStates: not one process per endpoint); it never writes.
      // The endpoint namespace pool (endpoint-pool.ts) fills once the checks are done: new namespaces
      // for endpoints to come (`unshare`), never one an endpoint has; not part of the restart's checks.
      const pooled = (a: readonly string[]): boolean => a[0] === "unshare" && !/-ep[123]$/.test(a[1] ?? "");
      const background = all
        .slice(startSpawns.length)
        .map(effective)
        .filter((a) => !pooled(a));
      const bulk = background.filter((a) => a.join(" ") === "sh -s");
      assert.equal(bulk.length, 1, `one process reads the 3 endpoints: ${JSON.stringify(background)}`);
      assert.ok(
        background.every((a) => (a[0] === "ip" && a.includes("-j")) || a.join(" ") === "sh -s"),
        `background: reads only: ${JSON.stringify(background)}`,
      );
      assert.equal(lab.logs.slice(from).filter((l) => l["msg"] === "endpoint repaired").length, 0);
      assert.deepEqual(await verdicts(lab), ["ok", "timeout"], "after the restart");
    } finally {
      await lab.destroy();
    }
  });

  test("an endpoint whose address and routes were lost while the agent was down is repaired in the background, and logged", async () => {
    const lab = await AgentLab.start("eps");
    try {
      await world(lab);
      await lab.stopAgent();
      const server = lab.ep("server");
      await lab.ip(["-n", server.view.netns, "addr", "flush", "dev", "eth0"]);
      await lab.ip(["-n", server.view.netns, "route", "flush", "table", "main"]);
      assert.notEqual(await lab.ep("client").probe.tcp(server.ip, 80, T), "ok", "broken before the restart");
      const from = lab.logs.length;
      await lab.startAgent();
      const repaired = await waitLog(lab, from, "endpoint repaired");
      assert.equal(repaired["endpoint"], "default/server");
      assert.ok(
        Array.isArray(repaired["changes"]) && repaired["changes"].length > 0,
        JSON.stringify(repaired),
      );
      const verified = await waitLog(lab, from, "adopted endpoints verified");
      assert.deepEqual([verified["checked"], verified["repaired"]], [3, 1]);
      // The node's neighbour entry for the server failed while it had no address: the kernel
      // resolves it again on a later packet, so the first probes may time out.
      let first = "";
      for (let i = 0; i < 10 && first !== "ok"; i++)
        first = await lab.ep("client").probe.tcp(server.ip, 80, T);
      assert.deepEqual(await verdicts(lab), ["ok", "timeout"], "after the repair");
    } finally {
      await lab.destroy();
    }
  });

  test("a cold start (records in the store, no namespaces at all) creates every endpoint in a batch with progress in the log and loads the policy once", async () => {
    const lab = await AgentLab.start("eps");
    try {
      await world(lab);
      for (const n of ["a", "b", "c"]) await lab.endpoint(n, { app: "filler" });
      const before = lab.agent
        .listEndpoints()
        .map((e) => `${e.name} ${e.ipv4} ${e.netns} ${e.hostIfname} ${e.identity}`)
        .sort();
      await lab.stopAgent();
      for (const e of lab.endpoints.values()) e.probe.stop();
      // A reboot: every namespace of the lab is gone (the node's, with its nftables table, too).
      await cleanupPrefix(`${lab.prefix}-`);
      const from = lab.logs.length;
      const spawns = await spawnsDuring(() => lab.startAgent());
      const applies = spawns.map(effective).filter((a) => a[0] === "nft" && a.includes("-f"));
      assert.equal(applies.length, 1, `one nft transaction: ${JSON.stringify(applies)}`);
      const progress = lab.logs.slice(from).filter((l) => l["msg"] === "endpoints created");
      assert.deepEqual(progress.at(-1), { ...progress.at(-1), done: 6, total: 6 });
      assert.equal(
        lab.logs.slice(from).filter((l) => l["msg"] === "endpoint could not be created").length,
        0,
      );
      // At most one process per endpoint, plus the namespaces' batch, the host ends' batch and the node's setup.
      const ipProcs = spawns.filter((a) => effective(a)[0] === "ip" || effective(a)[0] === "sh").length;
      assert.ok(ipProcs <= 6 + 2 + 3, `processes: ${ipProcs}: ${JSON.stringify(spawns)}`);
      const after = lab.agent
        .listEndpoints()
        .map((e) => `${e.name} ${e.ipv4} ${e.netns} ${e.hostIfname} ${e.identity}`)
        .sort();
      assert.deepEqual(after, before, "same endpoints, addresses and identities");
      assert.deepEqual(await lab.agent.datapathDiff(), []);
      for (const [name, e] of [...lab.endpoints]) {
        await lab.attach(e.view, name === "server" ? { tcp: [80] } : {});
      }
      assert.deepEqual(await verdicts(lab), ["ok", "timeout"], "after the cold start");
    } finally {
      await lab.destroy();
    }
  });
});
