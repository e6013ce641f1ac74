/**
 * `npm run bench -- auth --nodes 2` (root, etcd): the latency mutual authentication adds to a
 * connection ACROSS NODES, side by side in one run, interleaved rounds (issue 12 item 8), on a lab
 * cluster (src/lab: etcd, an underlay, two `membrane agent --spiffe` processes):
 *
 *   n1: clients authed, plain, burst-0..K-1 ----underlay----> n2: server (TCP 80)
 *   n2's ingress rules: from authed and burst-* with authentication required, from plain without
 *
 *   first    a connection of a pair that is not authenticated yet (the pair revoked and restored on
 *            n2 before each round): n2 holds the first SYN, runs the TLS 1.3 handshake with n1's
 *            agent (transport "channel": one request on the pooled connection n2 keeps to n1's
 *            agent, auth/channel.ts), and releases it
 *   firstTls the same with transport "per-pair" (a TCP connection and TLS 1.3 handshake per pair:
 *            the old path), interleaved with `first`
 *   prefilled  the same new pair authenticated ahead of its first packet (n2's cross-node prefill,
 *            auth/prefill-remote.ts, turned on for that round only: POST /v1/auth/prefill): the
 *            agents run with --auth-prefill local so that `first` is a held first packet
 *   later    a connection of the authenticated pair (the kernel entry: no queue)
 *   plain    a connection under a rule without authentication
 *   burst    K new pairs at once (K client identities): handshakes per second = K / the wall time
 *            until every connection answered, for each transport in turn
 *   profile  n2's "authentication profile" log lines (auth/timing.ts): ms from reading the held
 *            packet to each phase
 * Each sample is a TCP connect + echo round trip through the probe in the client's namespace.
 * `synRetransmits` counts SYNs the clients sent again (a first packet held past 1 s, or dropped):
 * the target is 0. One JSON line with p50/p99/max (ms), n2's pooled connection counters and the load.
 *   MEMBRANE_AUTH_BENCH_ROUNDS (default 30), MEMBRANE_AUTH_BENCH_BURST (default 12), MEMBRANE_AUTH_BENCH_BURST_ROUNDS (default 4)
 */
import { loadavg } from "node:os";
import { randomBytes } from "node:crypto";
import { startLabCluster, type LabCluster, type LabNode } from "../src/lab/cluster.js";
import { applyAndWait, createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { Probe } from "../src/probe/probe.js";
import type { PairProfile } from "../src/auth/timing.js";
import { phaseRows, row, sleep, synRetransmits } from "./auth-stats.js";
import { benchArgs, int } from "./cli.js";

const ROUNDS = Number(process.env["MEMBRANE_AUTH_BENCH_ROUNDS"] ?? 30);
const BURST = Number(process.env["MEMBRANE_AUTH_BENCH_BURST"] ?? 12);
const BURST_ROUNDS = Number(process.env["MEMBRANE_AUTH_BENCH_BURST_ROUNDS"] ?? 4);

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: authed}}, {matchLabels: {app: burst}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    authentication: {mode: required}
  - fromEndpoints: [{matchLabels: {app: plain}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

/** n2's last "authentication profile" log line (pino JSON; the kept log is bounded: compare lines, not counts). */
const lastProfileLine = (n: LabNode): string =>
  n
    .logs()
    .split("\n")
    .filter((l) => l.includes('"msg":"authentication profile"'))
    .at(-1) ?? "";
const profileOf = (line: string): PairProfile | undefined => {
  try {
    const o = JSON.parse(line) as PairProfile & { phases: PairProfile["ms"] };
    return { ...o, ms: o.phases };
  } catch {
    return undefined;
  }
};
/** n2's kernel entries of `source`'s pairs (the burst's pairs may be there too: prefill passes). */
const pairsOn = async (n: LabNode, source: number): Promise<number> =>
  ((await n.client.request("GET", "/v1/auth/pairs")) as { pairs: { source: number }[] }).pairs.filter((p) => p.source === source).length; // prettier-ignore
async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 30_000; !(await ok()); await sleep(20))
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  benchArgs({
    script: "auth-nodes",
    runner: "auth --nodes 2",
    measures: "The latency mutual authentication adds to a connection across two nodes of a lab cluster: first/later/plain connections, interleaved, and a burst of new pairs (handshakes/s). One JSON line with p50/p99/max (ms), the handshakes and the load.", // prettier-ignore
    root: "a lab cluster: etcd, an underlay, two agents in namespaces",
    env: { MEMBRANE_AUTH_BENCH_ROUNDS: "rounds (default 30)", MEMBRANE_AUTH_BENCH_BURST: "new pairs at once (default 12)" }, // prettier-ignore
    flags: { nodes: int({ help: "nodes (only 2; auth.js passes it on)", min: 2, max: 2, default: 2 }) },
  });
  const load0 = loadavg()[0];
  const log = (s: string): void => void process.stderr.write(`auth --nodes 2: ${s}\n`);
  let lab: LabCluster | undefined;
  const probes: Probe[] = [];
  try {
    lab = await startLabCluster({ prefix: `m5ab${randomBytes(2).toString("hex")}`, nodes: 2, spiffe: true, logLevel: "info", leaseTtl: 30, log, agentArgs: ["--auth-prefill", "local"] }); // prettier-ignore
    const [n1, n2] = lab.nodes as [LabNode, LabNode];
    const server = await createEndpoint(n2, "server", { app: "server" });
    const authed = await createEndpoint(n1, "authed", { app: "authed" });
    const plain = await createEndpoint(n1, "plain", { app: "plain" });
    const burst = [];
    for (let i = 0; i < BURST; i++) burst.push(await createEndpoint(n1, `burst-${i}`, { app: "burst", slot: String(i) })); // prettier-ignore
    const clients = [authed, plain, ...burst];
    await waitRemote(n1, [server.ipv4]);
    await waitRemote(
      n2,
      clients.map((c) => c.ipv4),
    );
    await applyAndWait(n1, POLICY, "auth-bench.yaml");
    const sp = Probe.start(server.netns);
    probes.push(sp);
    await sp.listen("tcp", 80);
    const probe = new Map(clients.map((c) => [c, Probe.start(c.netns)]));
    probes.push(...probe.values());
    const failed: string[] = [];
    const time = async (c: (typeof clients)[number]): Promise<number> => {
      const t = performance.now();
      const r = await (probe.get(c) as Probe).tcp(server.ipv4, 80, 10_000);
      if (r === "ok") return performance.now() - t;
      failed.push(`${c.name}: ${r}`);
      return NaN;
    };
    const fresh = async (ids: readonly number[]): Promise<void> => {
      for (const identity of ids) await n2.client.request("POST", "/v1/auth/revoke", { identity });
      for (const identity of ids) await n2.client.request("POST", "/v1/auth/restore", { identity });
    };
    // Warm-up (until n2 trusts n1's roots and knows its handshake port): the code paths of both agents.
    for (let ok = false, end = Date.now() + 60_000; !ok; await sleep(500)) {
      if (Date.now() > end) throw new Error("the authenticated pair never connected");
      ok = (await (probe.get(authed) as Probe).tcp(server.ipv4, 80, 3000)) === "ok";
    }
    await time(plain);
    log(`lab ready; ${ROUNDS} rounds`);
    const ns = clients.map((c) => c.netns);
    const retrans0 = await synRetransmits(ns);
    const s = { first: [] as number[], firstTls: [] as number[], prefilled: [] as number[], later: [] as number[], plain: [] as number[] }; // prettier-ignore
    const prefill = (remote: boolean): Promise<unknown> => n2.client.request("POST", "/v1/auth/prefill", { remote }); // prettier-ignore
    const profiles: Record<"first" | "firstTls", PairProfile[]> = { first: [], firstTls: [] };
    const transport = (mode: string): Promise<unknown> => n2.client.request("POST", "/v1/auth/transport", { mode }); // prettier-ignore
    for (let i = 0; i < ROUNDS; i++) {
      const order =
        i % 2 === 0
          ? (["first", "later", "plain", "prefilled", "firstTls"] as const)
          : (["plain", "firstTls", "prefilled", "first", "later"] as const);
      for (const k of order) {
        if (k === "prefilled") {
          await fresh([authed.identity]);
          await transport("channel"); // the prefill asks over the pooled connection
          const passes = async (): Promise<number> => ((await n2.client.request("GET", "/v1/auth/peers")) as { prefill?: { passes: number } }).prefill?.passes ?? 0; // prettier-ignore
          const p0 = await passes();
          await prefill(true); // n2 authenticates the pair with n1's agent now, before any packet
          await until("the prefilled pair on n2", async () => (await pairsOn(n2, authed.identity)) > 0);
          await until("n2's prefill pass to end", async () => (await passes()) > p0);
          await prefill(false);
          s.prefilled.push(await time(authed));
          continue;
        }
        if (k === "first" || k === "firstTls") {
          await fresh([authed.identity]);
          await transport(k === "first" ? "channel" : "per-pair");
        }
        // "later": once the pair's kernel entry is written (it follows the released first packet).
        if (k === "later")
          await until("the pair's kernel entry on n2", async () => (await pairsOn(n2, authed.identity)) > 0);
        const before = lastProfileLine(n2);
        s[k].push(await time(k === "plain" ? plain : authed));
        if (k === "first" || k === "firstTls") {
          await until("n2's profile of the pair", async () => lastProfileLine(n2) !== before);
          const p = profileOf(lastProfileLine(n2));
          if (p) profiles[k].push(p);
        }
      }
    }
    await transport("channel");
    const retransRounds = (await synRetransmits(ns)) - retrans0;
    // The rounds' figures now (the burst below takes minutes on a loaded machine).
    log(`rounds: ${JSON.stringify({ first: row(s.first), firstTls: row(s.firstTls), later: row(s.later), plain: row(s.plain), profile: { first: phaseRows(profiles.first), firstTls: phaseRows(profiles.firstTls) }, load: loadavg()[0] })}`); // prettier-ignore
    log(`burst: ${BURST} new pairs at once, ${BURST_ROUNDS} times`);
    const walls = { channel: [] as number[], "per-pair": [] as number[] };
    const each = { channel: [] as number[], "per-pair": [] as number[] };
    for (let r = 0; r < BURST_ROUNDS; r++) {
      for (const mode of r % 2 === 0
        ? (["channel", "per-pair"] as const)
        : (["per-pair", "channel"] as const)) {
        await fresh(burst.map((b) => b.identity));
        await transport(mode);
        const t = performance.now();
        each[mode].push(...(await Promise.all(burst.map((b) => time(b)))));
        walls[mode].push(performance.now() - t);
      }
    }
    await transport("channel");
    const retransAll = (await synRetransmits(ns)) - retrans0;
    const burstRow = (mode: "channel" | "per-pair"): Record<string, unknown> => ({ wallMs: walls[mode].map((w) => Math.round(w)), connection: row(each[mode]), handshakesPerSecond: Math.round((BURST / Math.min(...walls[mode])) * 1000 * 10) / 10 }); // prettier-ignore
    console.log(
      JSON.stringify({
        bench: "auth",
        nodes: 2,
        unit: "ms (TCP connect + echo through the probe, client on n1, server on n2)",
        first: row(s.first),
        firstTls: row(s.firstTls),
        profile: { first: phaseRows(profiles.first), firstTls: phaseRows(profiles.firstTls) },
        prefilled: row(s.prefilled),
        later: row(s.later),
        plain: row(s.plain),
        addedPrefilledP50: Math.round((row(s.prefilled).p50 - row(s.plain).p50) * 100) / 100,
        addedPrefilledP99: Math.round((row(s.prefilled).p99 - row(s.plain).p99) * 100) / 100,
        addedFirstP50: Math.round((row(s.first).p50 - row(s.plain).p50) * 100) / 100,
        addedFirstP99: Math.round((row(s.first).p99 - row(s.plain).p99) * 100) / 100,
        addedFirstTlsP50: Math.round((row(s.firstTls).p50 - row(s.plain).p50) * 100) / 100,
        addedFirstTlsP99: Math.round((row(s.firstTls).p99 - row(s.plain).p99) * 100) / 100,
        addedLaterP50: Math.round((row(s.later).p50 - row(s.plain).p50) * 100) / 100,
        burst: { pairs: BURST, rounds: BURST_ROUNDS, channel: burstRow("channel"), perPair: burstRow("per-pair") }, // prettier-ignore
        pooled: await n2.client.request("GET", "/v1/auth/peers"),
        synRetransmits: { rounds: retransRounds, all: retransAll },
        failedConnections: failed,
        n1Refused: [...new Set(n1.logs().split("\n").filter((l) => l.includes("refused a handshake")).map((l) => /"why":"([^"]*)"/.exec(l)?.[1] ?? l))].slice(0, 5), // prettier-ignore
        refusals: [...new Set(n2.logs().split("\n").filter((l) => l.includes("mutual authentication failed")).map((l) => /"err":"([^"]*)"/.exec(l)?.[1] ?? l))].slice(0, 5), // prettier-ignore
        loadavg: [load0, loadavg()[0]],
        targets: { "first added p99": "< 20 ms", synRetransmits: 0, later: "within noise of plain" },
      }),
    );
  } finally {
    for (const p of probes) p.stop();
    await lab?.stop();
  }
}

await main();
