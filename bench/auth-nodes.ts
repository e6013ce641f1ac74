/**
 * `npm run bench -- auth --nodes 2` (root, etcd): the latency mutual authentication adds to a
 * connection ACROSS NODES, side by side in one run, interleaved rounds (issue 12 item 8), on a lab
 * cluster (src/lab: etcd, an underlay, two `membrane agent --spiffe` processes):
 *
 *   n1: clients authed, plain, burst-0..K-1 ----underlay----> n2: server (TCP 80)
 *   n2's ingress rules: from authed and burst-* with authentication required, from plain without
 *
 *   first    the first connection of a pair that is not authenticated yet: PAIRS pairs a round
 *            (clients burst-0..PAIRS-1, their pairs revoked and restored on n2 before the round, each
 *            connection alone): n2 holds the first SYN, asks n1's agent on the pooled connection
 *            (auth/channel.ts, protocol v2: a proof once per connection and SVID), and releases it
 *   firstEach  the same with protocol v1 (every pair signed by both ends: the path before), in
 *            blocks of BLOCK rounds alternating with `first` (a switch opens a new connection: the
 *            first pair of each SVID on it is signed in v2 too, and counted in `first`)
 *   firstTls the same with transport "per-pair" (a TCP connection and TLS 1.3 handshake per pair:
 *            the oldest path), one a round
 *   prefilled  a new pair authenticated ahead of its first packet (n2's cross-node prefill,
 *            auth/prefill-remote.ts, turned on for that sample only: POST /v1/auth/prefill): the
 *            agents run with --auth-prefill local so that `first` is a held first packet
 *   later    a connection of an authenticated pair (the kernel entry: no queue), PAIRS a round
 *   laterPlain  a connection without authentication beside each `later` (alternating which goes
 *            first), after the same wait: `addedLaterP50` compares with these, not with `plain`
 *            (measured beside the held connections, after other work of the agents and the bench)
 *   plain    a connection under a rule without authentication, one beside each `first`
 *   burst    K new pairs at once (K client identities): handshakes per second = K / the wall time
 *            until every connection answered, for each transport in turn
 *   profile  n2's "authentication profile" log lines (auth/timing.ts: ms from reading the held
 *            packet to each phase) and n1's "authentication answer profile" lines (channel-server.ts:
 *            ms from reading the request to its chain checked, its proof checked, the answer written)
 * Each sample is a TCP connect + echo round trip through the probe in the client's namespace.
 * `synRetransmits` counts SYNs the clients sent again (a first packet held past 1 s, or dropped):
 * the target is 0. One JSON line with p50/p99/max (ms), n2's pooled connection counters and the load.
 *   MEMBRANE_AUTH_BENCH_ROUNDS (default 30), MEMBRANE_AUTH_BENCH_PAIRS (new pairs a round, default 8, at most BURST),
 *   MEMBRANE_AUTH_BENCH_BURST (default 12), MEMBRANE_AUTH_BENCH_BURST_ROUNDS (default 4)
 */
import { appendFileSync } from "node:fs";
import { loadavg } from "node:os";
import { randomBytes } from "node:crypto";
import { startLabCluster, type LabCluster, type LabNode } from "../src/lab/cluster.js";
import { applyAndWait, createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { Probe } from "../src/probe/probe.js";
import type { PairProfile } from "../src/auth/timing.js";
import { pct, phaseRows, row, sleep, synRetransmits } from "./auth-stats.js";
import { benchArgs, int } from "./cli.js";

const ROUNDS = Number(process.env["MEMBRANE_AUTH_BENCH_ROUNDS"] ?? 30);
const BURST = Number(process.env["MEMBRANE_AUTH_BENCH_BURST"] ?? 12);
const BURST_ROUNDS = Number(process.env["MEMBRANE_AUTH_BENCH_BURST_ROUNDS"] ?? 4);
const PAIRS = Math.min(BURST, Number(process.env["MEMBRANE_AUTH_BENCH_PAIRS"] ?? 8));
/** Rounds in a row with one proof mode (a switch reconnects). */
const BLOCK = 5;

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

/** A node's last log line with `msg` (pino JSON; the kept log is bounded: compare lines, not counts). */
const lastLine = (n: LabNode, msg: string): string =>
  n
    .logs()
    .split("\n")
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .at(-1) ?? "";
const lastProfileLine = (n: LabNode): string => lastLine(n, "authentication profile");
const lastAnswerLine = (n: LabNode): string => lastLine(n, "authentication answer profile");
/** n1's answer profile: ms from reading the request to each step, and which proofs were signed. */
interface AnswerProfile {
  readonly phases: Record<string, number>;
  readonly proof: { request: string; answer: string };
}
const answerOf = (line: string): AnswerProfile | undefined => {
  try {
    return JSON.parse(line) as AnswerProfile;
  } catch {
    return undefined;
  }
};
const answerRows = (ps: readonly AnswerProfile[]): Record<string, unknown> => {
  const out: Record<string, unknown> = { n: ps.length, signedRequests: ps.filter((p) => p.proof.request === "signed").length, signedAnswers: ps.filter((p) => p.proof.answer === "signed").length }; // prettier-ignore
  for (const k of ["checked", "verified", "written", "turn"]) {
    const xs = ps.map((p) => p.phases[k]).filter((x): x is number => typeof x === "number");
    if (xs.length > 0) out[k] = { p50: pct(xs, 50), p99: pct(xs, 99) };
  }
  return out;
};
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
/** One held first connection with both agents' profiles of it. */
interface Sample {
  readonly k: string;
  readonly round: number;
  readonly client: string;
  readonly ms: number;
  readonly profile?: PairProfile;
  readonly answer?: AnswerProfile;
}
/**
 * Which samples pay the tail: the slowest few with what n2's profile says of them (cache misses,
 * a signed answer, its loop's busy and GC time), and the samples with and without a validation
 * miss apart. MEMBRANE_AUTH_BENCH_SAMPLES=<file> writes every sample as a JSON line.
 */
function tailOf(all: readonly Sample[], k: string): Record<string, unknown> {
  const xs = all.filter((x) => x.k === k);
  const file = process.env["MEMBRANE_AUTH_BENCH_SAMPLES"];
  if (file) appendFileSync(file, xs.map((x) => JSON.stringify(x) + "\n").join(""));
  const slim = (x: Sample): Record<string, unknown> => ({ ms: x.ms, round: x.round, misses: x.profile?.misses, signed: x.profile?.signed, busyMs: x.profile?.busyMs, gcMs: x.profile?.gcMs, phases: x.profile?.ms, answer: x.answer?.phases }); // prettier-ignore
  const missed = xs.filter((x) => (x.profile?.misses ?? 0) > 0).map((x) => x.ms);
  const hit = xs.filter((x) => x.profile?.misses === 0).map((x) => x.ms);
  return { slowest: [...xs].sort((a, b) => b.ms - a.ms).slice(0, 4).map(slim), missed: row(missed), hit: row(hit) }; // prettier-ignore
}
async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 30_000; !(await ok()); await sleep(20))
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  benchArgs({
    script: "auth-nodes",
    runner: "auth --nodes 2",
    measures: "The latency mutual authentication adds to a connection across two nodes of a lab cluster: first (held; proof once per SVID, and every pair signed, in alternating blocks)/later/plain connections, interleaved, with both agents' per-step profiles, and a burst of new pairs (handshakes/s). One JSON line with p50/p99/max and sample counts (ms), the handshakes and the load.", // prettier-ignore
    root: "a lab cluster: etcd, an underlay, two agents in namespaces",
    env: { MEMBRANE_AUTH_BENCH_ROUNDS: "rounds (default 30)", MEMBRANE_AUTH_BENCH_PAIRS: "new pairs a round, each connected alone (default 8: 30 rounds give 120 held first connections in each protocol)", MEMBRANE_AUTH_BENCH_BURST: "new pairs at once (default 12)", MEMBRANE_AUTH_BENCH_BURST_ROUNDS: "burst rounds (default 4)" }, // prettier-ignore
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
    // Each client's probe warmed on its own loopback: the first connection a probe makes pays its
    // own cold code (10+ ms), which is not authentication; nothing reaches n2, the pairs stay new.
    for (const [c, p] of probe) {
      await p.listen("tcp", 81);
      for (let k = 0; k < 3; k++) if ((await p.tcp("127.0.0.1", 81, 3000)) !== "ok") log(`cannot warm ${c.name}'s probe`); // prettier-ignore
    }
    log(`lab ready; ${ROUNDS} rounds`);
    const ns = clients.map((c) => c.netns);
    const retrans0 = await synRetransmits(ns);
    const s = { first: [] as number[], firstEach: [] as number[], firstTls: [] as number[], prefilled: [] as number[], later: [] as number[], laterPlain: [] as number[], plain: [] as number[] }; // prettier-ignore
    const prefill = (remote: boolean): Promise<unknown> => n2.client.request("POST", "/v1/auth/prefill", { remote }); // prettier-ignore
    type Held = "first" | "firstEach" | "firstTls";
    const profiles: Record<Held, PairProfile[]> = { first: [], firstEach: [], firstTls: [] };
    const answers: Record<"first" | "firstEach", AnswerProfile[]> = { first: [], firstEach: [] };
    const samples: Sample[] = [];
    const transport = (mode: string, proof = "once"): Promise<unknown> => n2.client.request("POST", "/v1/auth/transport", { mode, proof }); // prettier-ignore
    const peers = async (): Promise<{ peers: { protocol?: string }[] }> => (await n2.client.request("GET", "/v1/auth/peers")) as { peers: { protocol?: string }[] }; // prettier-ignore
    const pairsNow = burst.slice(0, PAIRS);
    /** One held first connection of `c` (its pair fresh), with n2's profile and n1's answer profile. */
    const held = async (k: Held, c: (typeof clients)[number], round: number): Promise<void> => {
      const before = lastProfileLine(n2);
      const answered = lastAnswerLine(n1);
      const ms = await time(c);
      s[k].push(ms);
      await until("n2's profile of the pair", async () => lastProfileLine(n2) !== before);
      const p = profileOf(lastProfileLine(n2));
      if (p) profiles[k].push(p);
      if (k === "firstTls") return;
      await until("n1's answer profile", async () => lastAnswerLine(n1) !== answered);
      const a = answerOf(lastAnswerLine(n1));
      if (a) answers[k].push(a);
      samples.push({ k, round, client: c.name, ms: Math.round(ms * 100) / 100, ...(p ? { profile: p } : {}), ...(a ? { answer: a } : {}) }); // prettier-ignore
    };
    for (let i = 0; i < ROUNDS; i++) {
      const proof = Math.floor(i / BLOCK) % 2 === 0 ? "once" : "each";
      const k = proof === "once" ? "first" : "firstEach";
      await transport("channel", proof);
      const want = proof === "once" ? "v2" : "v1";
      await until(`n2's pooled connection of protocol ${want}`, async () => (await peers()).peers.some((p) => p.protocol === want)); // prettier-ignore
      // PAIRS new pairs, one connection at a time, each beside a connection without authentication.
      await fresh(pairsNow.map((c) => c.identity));
      for (const [j, c] of pairsNow.entries()) {
        if ((i + j) % 2 === 0) await held(k, c, i);
        s.plain.push(await time(plain));
        if ((i + j) % 2 === 1) await held(k, c, i);
      }
      // "later": once each pair's kernel entry is written (it follows the released first packet).
      for (const [j, c] of pairsNow.entries()) {
        await until("the pair's kernel entry on n2", async () => (await pairsOn(n2, c.identity)) > 0);
        if ((i + j) % 2 === 1) s.laterPlain.push(await time(plain));
        s.later.push(await time(c));
        if ((i + j) % 2 === 0) s.laterPlain.push(await time(plain));
      }
      // The same new pair authenticated ahead (what the agent does when a peer's endpoint appears).
      await fresh([authed.identity]);
      const passes = async (): Promise<number> => ((await n2.client.request("GET", "/v1/auth/peers")) as { prefill?: { passes: number } }).prefill?.passes ?? 0; // prettier-ignore
      const p0 = await passes();
      await prefill(true); // n2 authenticates the pair with n1's agent now, before any packet
      await until("the prefilled pair on n2", async () => (await pairsOn(n2, authed.identity)) > 0);
      await until("n2's prefill pass to end", async () => (await passes()) > p0);
      await prefill(false);
      s.prefilled.push(await time(authed));
      // A TLS handshake per pair (the oldest path), one a round.
      await fresh([authed.identity]);
      await transport("per-pair", proof);
      await held("firstTls", authed, i);
      if ((i + 1) % 10 === 0) log(`round ${i + 1}/${ROUNDS}: first ${JSON.stringify(row(s.first))}, load ${loadavg()[0]}`); // prettier-ignore
    }
    await transport("channel");
    const retransRounds = (await synRetransmits(ns)) - retrans0;
    // The rounds' figures now (the burst below takes minutes on a loaded machine).
    log(`rounds: ${JSON.stringify({ first: row(s.first), firstEach: row(s.firstEach), firstTls: row(s.firstTls), later: row(s.later), laterPlain: row(s.laterPlain), plain: row(s.plain), load: loadavg()[0] })}`); // prettier-ignore
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
        pairsPerRound: PAIRS,
        first: row(s.first),
        firstEach: row(s.firstEach),
        firstTls: row(s.firstTls),
        profile: { first: phaseRows(profiles.first), firstEach: phaseRows(profiles.firstEach), firstTls: phaseRows(profiles.firstTls) }, // prettier-ignore
        answerProfile: { first: answerRows(answers.first), firstEach: answerRows(answers.firstEach) },
        prefilled: row(s.prefilled),
        later: row(s.later),
        laterPlain: row(s.laterPlain),
        plain: row(s.plain),
        addedPrefilledP50: Math.round((row(s.prefilled).p50 - row(s.plain).p50) * 100) / 100,
        addedPrefilledP99: Math.round((row(s.prefilled).p99 - row(s.plain).p99) * 100) / 100,
        addedFirstP50: Math.round((row(s.first).p50 - row(s.plain).p50) * 100) / 100,
        addedFirstP99: Math.round((row(s.first).p99 - row(s.plain).p99) * 100) / 100,
        addedFirstEachP50: Math.round((row(s.firstEach).p50 - row(s.plain).p50) * 100) / 100,
        addedFirstEachP99: Math.round((row(s.firstEach).p99 - row(s.plain).p99) * 100) / 100,
        addedFirstTlsP50: Math.round((row(s.firstTls).p50 - row(s.plain).p50) * 100) / 100,
        addedFirstTlsP99: Math.round((row(s.firstTls).p99 - row(s.plain).p99) * 100) / 100,
        addedLaterP50: Math.round((row(s.later).p50 - row(s.laterPlain).p50) * 100) / 100,
        addedLaterP50VsPlain: Math.round((row(s.later).p50 - row(s.plain).p50) * 100) / 100,
        burst: { pairs: BURST, rounds: BURST_ROUNDS, channel: burstRow("channel"), perPair: burstRow("per-pair") }, // prettier-ignore
        pooled: await n2.client.request("GET", "/v1/auth/peers"),
        synRetransmits: { rounds: retransRounds, all: retransAll },
        tail: { first: tailOf(samples, "first"), firstEach: tailOf(samples, "firstEach") },
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
