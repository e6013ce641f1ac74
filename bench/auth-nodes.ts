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
 *            agent on the handshake port, and releases it
 *   later    a connection of the authenticated pair (the kernel entry: no queue)
 *   plain    a connection under a rule without authentication
 *   burst    K new pairs at once (K client identities): handshakes per second = K / the wall time
 *            until every connection answered
 * Each sample is a TCP connect + echo round trip through the probe in the client's namespace.
 * `synRetransmits` counts SYNs the clients sent again (a first packet held past 1 s, or dropped):
 * the target is 0. One JSON line with p50/p99/max (ms), the handshakes n2 logged and the load.
 *   MEMBRANE_AUTH_BENCH_ROUNDS (default 30), MEMBRANE_AUTH_BENCH_BURST (default 12)
 */
import { loadavg } from "node:os";
import { randomBytes } from "node:crypto";
import { startLabCluster, type LabCluster, type LabNode } from "../src/lab/cluster.js";
import { applyAndWait, createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { Probe } from "../src/probe/probe.js";
import { row, sleep, synRetransmits } from "./auth-stats.js";
import { benchArgs, int } from "./cli.js";

const ROUNDS = Number(process.env["MEMBRANE_AUTH_BENCH_ROUNDS"] ?? 30);
const BURST = Number(process.env["MEMBRANE_AUTH_BENCH_BURST"] ?? 12);
const BURST_ROUNDS = 3;

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

const handshakes = (n: LabNode): number => (n.logs().match(/"msg":"pair authenticated"/g) ?? []).length;
/** How long each handshake took as the node holding the first packet logged it (ms). */
const handshakeMs = (n: LabNode): number[] =>
  n
    .logs()
    .split("\n")
    .filter((l) => l.includes('"msg":"pair authenticated"'))
    .map((l) => Number(/"ms":(\d+)/.exec(l)?.[1]))
    .filter((x) => Number.isFinite(x));
const pairsOn = async (n: LabNode): Promise<number> =>
  ((await n.client.request("GET", "/v1/auth/pairs")) as { pairs: unknown[] }).pairs.length;
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
    lab = await startLabCluster({ prefix: `m2ab${randomBytes(2).toString("hex")}`, nodes: 2, spiffe: true, logLevel: "info", leaseTtl: 30, log }); // prettier-ignore
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
    const hs0 = handshakes(n2);
    const s = { first: [] as number[], later: [] as number[], plain: [] as number[] };
    for (let i = 0; i < ROUNDS; i++) {
      await fresh([authed.identity]);
      const order =
        i % 2 === 0 ? (["first", "later", "plain"] as const) : (["plain", "first", "later"] as const);
      for (const k of order) {
        // "later": once the pair's kernel entry is written (it follows the released first packet).
        if (k === "later") await until("the pair's kernel entry on n2", async () => (await pairsOn(n2)) > 0);
        s[k].push(await time(k === "plain" ? plain : authed));
      }
    }
    const hsRounds = handshakes(n2) - hs0;
    const hsMs = handshakeMs(n2).slice(-hsRounds);
    const retransRounds = (await synRetransmits(ns)) - retrans0;
    log(`burst: ${BURST} new pairs at once, ${BURST_ROUNDS} times`);
    const walls: number[] = [];
    const each: number[] = [];
    for (let r = 0; r < BURST_ROUNDS; r++) {
      await fresh(burst.map((b) => b.identity));
      const t = performance.now();
      each.push(...(await Promise.all(burst.map((b) => time(b)))));
      walls.push(performance.now() - t);
    }
    const retransAll = (await synRetransmits(ns)) - retrans0;
    const best = Math.min(...walls);
    console.log(
      JSON.stringify({
        bench: "auth",
        nodes: 2,
        unit: "ms (TCP connect + echo through the probe, client on n1, server on n2)",
        first: row(s.first),
        later: row(s.later),
        plain: row(s.plain),
        addedFirstP50: Math.round((row(s.first).p50 - row(s.plain).p50) * 100) / 100,
        addedFirstP99: Math.round((row(s.first).p99 - row(s.plain).p99) * 100) / 100,
        addedLaterP50: Math.round((row(s.later).p50 - row(s.plain).p50) * 100) / 100,
        handshakesInRounds: hsRounds,
        handshakeAsN2Logged: row(hsMs),
        burst: { pairs: BURST, rounds: BURST_ROUNDS, wallMs: walls.map((w) => Math.round(w)), connection: row(each), handshakesPerSecond: Math.round((BURST / best) * 1000 * 10) / 10 }, // prettier-ignore
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
