/**
 * `npm run bench -- auth` (root): the latency mutual authentication adds to a connection, side by
 * side in one run, interleaved rounds, on one node (issue 12 item 8):
 *   first    a connection of a pair that is not authenticated yet (its pair removed before each
 *            round with `auth revoke` + `restore`): the first SYN is held for the pair's proof
 *            (transport "channel": both SVIDs validated, each key proven by a signature)
 *            (the queue read by the agent's own socket, the kernel entry written through its own
 *            nfnetlink socket: auth/nfqueue-socket.ts, datapath/auth-wire.ts)
 *   firstNft the same with the kernel entry written by an `nft` process (session 13's writer)
 *   firstOld session 13's whole path: the queue read by a reader process (auth/nfqueue-child.ts,
 *            warmed after each switch) and the entry written by `nft`
 *   firstTls the same with transport "per-pair" (an in-process TLS 1.3 handshake: the old path)
 *   later    a connection of an authenticated pair (the kernel entry: no queue)
 *   plain    a connection under a rule without authentication
 *   prefilled  the first connection of a new pair authenticated ahead (auth/prefill.ts, the agent's
 *            default for local pairs): its kernel entry is there before the first SYN
 * Each sample is a TCP connect + echo round trip through the probe in the client's namespace;
 * the probe's own overhead is the same in all three. One JSON line with p50/p99 (ms), the SYNs the
 * clients sent again (a held first packet released after 1 s, or dropped; target 0), the load,
 * and the profile of the held packets (auth/timing.ts: ms from the agent reading the packet to
 * each phase; `gap` = the client's added time the agent does not see: the queue's hops).
 *   `npm run bench -- auth --nodes 2`: the same across two nodes of a lab cluster (auth-nodes.ts),
 *   with handshakes per second.
 */
import { loadavg } from "node:os";
import { AgentLab } from "../test/agent/e2e/harness.js";
import { pct, phaseRows, row, sleep, synRetransmits } from "./auth-stats.js";
import type { PairProfile } from "../src/auth/timing.js";
import { prefillLocalPairs } from "../src/auth/prefill.js";
import { benchArgs, int } from "./cli.js";

async function until(ok: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 30_000; !(await ok()); await sleep(20))
    if (Date.now() > end) throw new Error("timed out waiting for the pair's kernel entry");
}

const ROUNDS = Number(process.env["MEMBRANE_AUTH_BENCH_ROUNDS"] ?? 40);

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: authed}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    authentication: {mode: required}
  - fromEndpoints: [{matchLabels: {app: plain}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

async function main(): Promise<void> {
  const load0 = loadavg()[0];
  // Prefill off: "first" is the held first packet; "prefilled" runs the agent's prefill pass itself.
  const lab = await AgentLab.start("m5a", { spiffe: { trustDomain: "bench.test", prefillLocalPairs: false }, engine: { meshAuth: true } }); // prettier-ignore
  try {
    const server = await lab.endpoint("server", { app: "server" }, { tcp: [80] });
    const authed = await lab.endpoint("authed", { app: "authed" });
    const plain = await lab.endpoint("plain", { app: "plain" });
    await lab.agent.applyPolicies(POLICY, "bench.yaml");
    const auth = lab.agent.spiffe?.auth;
    if (!auth) throw new Error("mutual authentication did not start");
    const time = async (p: typeof authed): Promise<number> => {
      const t = performance.now();
      const r = await p.probe.tcp(server.ip, 80, 10_000);
      if (r !== "ok") throw new Error(`connect failed: ${r}`);
      return performance.now() - t;
    };
    await time(plain); // warm-up: the probes and the handshake's code paths
    await time(authed);
    const retrans0 = await synRetransmits([authed.view.netns, plain.view.netns]);
    const s = { first: [] as number[], firstNft: [] as number[], firstOld: [] as number[], firstTls: [] as number[], later: [] as number[], plain: [] as number[], prefilled: [] as number[] }; // prettier-ignore
    type Held = "first" | "firstNft" | "firstOld" | "firstTls";
    const profiles: Record<Held, PairProfile[]> = { first: [], firstNft: [], firstOld: [], firstTls: [] };
    const writer = auth.p.table.writer;
    const reader = auth.queue.via;
    const held = (k: string): k is Held => k.startsWith("first");
    const fresh = async (): Promise<void> => {
      await auth.revoke(authed.view.identity); // the pair leaves the kernel and the agent
      auth.restore(authed.view.identity);
    };
    /** The path of a held packet: the queue's reader, the kernel writer, the transport. */
    const setup = async (k: Held | "later" | "plain" | "prefilled"): Promise<void> => {
      const want = k === "firstOld" ? "process" : reader;
      if (auth.queue.via !== want) {
        await auth.queue.restart(want);
        if (want === "process") {
          // A reader process just started is cold (session 13's ran for the agent's life): warm it.
          await fresh();
          await time(authed);
          await until(async () => (await auth.list()).length > 0);
        }
      }
      auth.p.table.writer = k === "firstNft" || k === "firstOld" ? "nft" : writer;
      auth.transport = k === "firstTls" ? "per-pair" : "channel";
    };
    for (let i = 0; i < ROUNDS; i++) {
      const order =
        i % 2 === 0
          ? (["first", "later", "plain", "firstOld", "firstNft", "firstTls"] as const)
          : (["plain", "firstTls", "firstNft", "firstOld", "first", "later"] as const);
      for (const k of order) {
        await setup(k);
        if (held(k)) await fresh();
        // "later": once the pair's kernel entry is written (it follows the released first packet).
        if (k === "later") await until(async () => (await auth.list()).length > 0);
        s[k].push(await time(k === "plain" ? plain : authed));
        if (held(k)) {
          await until(async () => (await auth.list()).length > 0); // its profile ends with the kernel entry
          const p = auth.profiles.recent.at(-1);
          if (p) profiles[k].push(p);
        }
      }
      await setup("prefilled");
      // The same new pair authenticated ahead (what the agent does when a policy or endpoint appears).
      await auth.revoke(authed.view.identity);
      auth.restore(authed.view.identity);
      await prefillLocalPairs(auth);
      await until(async () => (await auth.list()).length > 0);
      s.prefilled.push(await time(authed));
    }
    const retrans = (await synRetransmits([authed.view.netns, plain.view.netns])) - retrans0;
    console.log(
      JSON.stringify({
        bench: "auth",
        unit: "ms (TCP connect + echo through the probe)",
        first: row(s.first),
        firstNft: row(s.firstNft),
        firstOld: row(s.firstOld),
        firstTls: row(s.firstTls),
        io: { reader, writer, whyProcess: auth.queue.whyProcess, tableStats: auth.p.table.stats },
        profile: { first: phaseRows(profiles.first), firstNft: phaseRows(profiles.firstNft), firstOld: phaseRows(profiles.firstOld), firstTls: phaseRows(profiles.firstTls) }, // prettier-ignore
        prefilled: row(s.prefilled),
        later: row(s.later),
        plain: row(s.plain),
        addedFirstP50: Math.round((pct(s.first, 50) - pct(s.plain, 50)) * 100) / 100,
        addedFirstP99: Math.round((pct(s.first, 99) - pct(s.plain, 99)) * 100) / 100,
        addedFirstNftP50: Math.round((pct(s.firstNft, 50) - pct(s.plain, 50)) * 100) / 100,
        addedFirstNftP99: Math.round((pct(s.firstNft, 99) - pct(s.plain, 99)) * 100) / 100,
        addedFirstOldP50: Math.round((pct(s.firstOld, 50) - pct(s.plain, 50)) * 100) / 100,
        addedFirstOldP99: Math.round((pct(s.firstOld, 99) - pct(s.plain, 99)) * 100) / 100,
        addedFirstTlsP50: Math.round((pct(s.firstTls, 50) - pct(s.plain, 50)) * 100) / 100,
        addedFirstTlsP99: Math.round((pct(s.firstTls, 99) - pct(s.plain, 99)) * 100) / 100,
        addedLaterP50: Math.round((pct(s.later, 50) - pct(s.plain, 50)) * 100) / 100,
        synRetransmits: retrans,
        loadavg: [load0, loadavg()[0]],
        targets: { "first added p99": "< 20 ms", synRetransmits: 0, later: "within noise of plain" },
      }),
    );
  } finally {
    await lab.destroy();
  }
}

const { flags } = benchArgs({
  script: "auth",
  runner: "auth",
  measures: "The latency mutual authentication adds to a connection, side by side, interleaved: the first connection of a new pair (held; with the agent's own queue and table sockets, with an nft writer, with session 13's reader process and nft writer, with a TLS handshake per pair), a later one, a prefilled one, one under a rule without authentication. One JSON line with p50/p99 (ms), SYN retransmits and the load.", // prettier-ignore
  root: "an agent with endpoints in namespaces, nftables, the auth queue; --nodes 2 also needs etcd",
  env: { MEMBRANE_AUTH_BENCH_ROUNDS: "rounds (default 40 on one node, 30 on two)", MEMBRANE_AUTH_BENCH_PAIRS: "new pairs a round on two nodes (default 8)", MEMBRANE_AUTH_BENCH_BURST: "new pairs at once on two nodes (default 12)", MEMBRANE_AUTH_BENCH_BURST_ROUNDS: "burst rounds on two nodes (default 4)" }, // prettier-ignore
  flags: { nodes: int({ help: "1: one node; 2: across two nodes of a lab cluster (auth-nodes.js)", min: 1, max: 2, default: 1 }) }, // prettier-ignore
});
if (flags.nodes === 2) await import("./auth-nodes.js");
else await main();
