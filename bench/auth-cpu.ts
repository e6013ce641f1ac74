/**
 * `npm run bench -- auth-cpu`: the CPU one cross-node pair costs both agents in its messages on the
 * pooled connection (auth/channel-wire.ts, pair-proof.ts; TLS records and I/O not included), side
 * by side in one process, interleaved rounds, SVIDs from a real SPIFFE CA:
 *   s14  every message signed; each proof checked with the leaf's key parsed again from its DER
 *        (session 14's path)
 *   v1   every message signed; the key taken from the validated chain (ValidSvid.leafKey)
 *   v2   a proof once per (connection, SVID): the steady state, no signature on either side
 * Each pair: the request encoded, parsed, its chain validated (the cache: a hit), its proof
 * checked; the answer signed, encoded, parsed, validated and checked. CPU time (process.cpuUsage),
 * not wall time: a loaded machine stretches both alike. One JSON line, µs per pair.
 */
import { randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { loadavg } from "node:os";
import pino from "pino";
import { encodeFrame, FrameReader, parseAnswer, parseRequest } from "../src/auth/channel-wire.js";
import { signRequest, signResponse, SigningKeys, verifyRequest, verifyResponse } from "../src/auth/pair-proof.js"; // prettier-ignore
import { SvidProvider } from "../src/spiffe/provider.js";
import { SvidValidationCache } from "../src/spiffe/validate-cache.js";
import { benchArgs, int } from "./cli.js";

const { flags } = benchArgs({
  script: "auth-cpu",
  runner: "auth-cpu",
  measures: "The CPU a cross-node pair costs both agents in its pooled-connection messages: session 14's path (the leaf's key parsed per proof), protocol v1 (signed, key parsed once), protocol v2 (a proof once per connection and SVID), interleaved rounds. One JSON line, µs of CPU per pair.", // prettier-ignore
  root: false,
  flags: {
    pairs: int({ help: "pairs per round and path", min: 10, max: 100_000, default: 200 }),
    rounds: int({ help: "rounds (each runs the three paths, in alternating order)", min: 1, max: 1000, default: 10 }), // prettier-ignore
  },
});

type Path = "s14" | "v1" | "v2";

async function main(): Promise<void> {
  const load0 = loadavg()[0];
  const pr = await SvidProvider.start({ trustDomain: "cpu.test", logger: pino({ level: "silent" }), timers: false }); // prettier-ignore
  const [client, server] = [await pr.ensure(300), await pr.ensure(301)];
  const keys = new SigningKeys();
  const cache = new SvidValidationCache();
  const bundle = pr.bundle();
  const exporter = randomBytes(32);
  const o = { trustDomain: pr.trustDomain };
  const keyOf = (path: Path, leaf: Buffer, parsed: KeyObject): KeyObject =>
    path === "s14" ? new X509Certificate(leaf).publicKey : parsed;
  let id = 0;
  const pair = (path: Path): void => {
    const claim = { id: ++id, src: 300, dst: 301, side: "d" as const, nonce: randomBytes(32).toString("base64") }; // prettier-ignore
    const signed = path !== "v2";
    const sig = signed ? signRequest(keys.get(client.serial, () => client.privateKeyPkcs8()), exporter, claim) : undefined; // prettier-ignore
    const req = { t: "pair" as const, ...claim, chain: [...client.chain] };
    const r = parseRequest(new FrameReader().push(encodeFrame(sig ? { ...req, sig } : req))[0] as Buffer);
    const v = cache.validate(r.chain, bundle, { ...o, now: Date.now() });
    if (r.sig) verifyRequest(keyOf(path, r.chain[0] as Buffer, v.leafKey), exporter, r, r.sig);
    const asig = signed ? signResponse(keys.get(server.serial, () => server.privateKeyPkcs8()), exporter, r, r.sig) : undefined; // prettier-ignore
    const ans = { t: "ok" as const, id: r.id, chain: [...server.chain] };
    const a = parseAnswer(
      new FrameReader().push(encodeFrame(asig ? { ...ans, sig: asig } : ans))[0] as Buffer,
    );
    if (a.t !== "ok") throw new Error("the answer is not ok");
    const w = cache.validate(a.chain, bundle, { ...o, now: Date.now() });
    if (a.sig) verifyResponse(keyOf(path, a.chain[0] as Buffer, w.leafKey), exporter, claim, sig, a.sig);
  };
  const paths: Path[] = ["s14", "v1", "v2"];
  for (const p of paths) for (let i = 0; i < 20; i++) pair(p); // warm-up
  const cpu: Record<Path, number[]> = { s14: [], v1: [], v2: [] };
  for (let round = 0; round < flags.rounds; round++) {
    for (const p of round % 2 === 0 ? paths : [...paths].reverse()) {
      const u0 = process.cpuUsage();
      for (let i = 0; i < flags.pairs; i++) pair(p);
      const u = process.cpuUsage(u0);
      cpu[p].push((u.user + u.system) / flags.pairs);
    }
  }
  const med = (xs: number[]): number => Math.round([...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN); // prettier-ignore
  console.log(
    JSON.stringify({
      bench: "auth-cpu",
      unit: "µs of CPU per pair, both agents' messages (median of rounds)",
      s14: med(cpu.s14),
      v1: med(cpu.v1),
      v2: med(cpu.v2),
      pairs: flags.pairs * flags.rounds,
      loadavg: [load0, loadavg()[0]],
    }),
  );
}

await main();
