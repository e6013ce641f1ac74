// Mutual authentication across nodes, for real (root, etcd): two `membrane agent --spiffe` processes
// of a lab cluster (src/lab), a client pod on n1 and a server pod on n2, policies whose rules
// require authentication, real TCP connections.
//  - the first connection of the pair is held on n1, authenticated with n2's agent by ONE request
//    on the TLS 1.3 connection n1 keeps to n2's agent (each side proves its own pod's SVID key) and
//    released; both kernels hold the pair (n1: egress rule, n2: ingress rule); later connections
//    skip the queue;
//  - an SVID rotated on n1 authenticates the pair again over the same pooled connection; with the
//    peer's end revoked on n2, the next rotation is refused and n1 removes the pair;
//  - strangers: an underlay address no node has gets no answer on the handshake port; from n1's
//    address, a node certificate of n1 signed by a CA nobody trusts gets no pooled connection;
//  - n1's agent restarted: a new pooled connection carries the next new pair;
//  - a pair the peer refuses (its end's SVID withheld on n1) drops on n2 with 189 and a flow;
//  - the handshake port: a pod's connection to it never gets an answer (the kernel's guard);
//  - revocation: the policy no longer requiring auth removes the pair on both nodes and cuts the
//    pair's established connection; an identity that no longer exists (its only pod relabelled)
//    likewise;
//  - cross-node prefill (turned on through the API): pairs the policies name are authenticated
//    over the pooled connections before any packet; their connections queue nothing; a revoked
//    end is not authenticated ahead; no private key in any log or API answer.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { SpiffeCa } from "../../src/spiffe/ca.js";
import { exportPkcs8, newKeyPair } from "../../src/spiffe/certs.js";
import { nodeSpiffeId } from "../../src/auth/node-cert.js";
import { pings } from "../../src/lab/underlay.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { applyAndWait, createEndpoint, readFlows, waitRemote } from "../../src/lab/cluster-api.js";
import { Probe } from "../../src/probe/probe.js";
import { runRaw } from "../../src/datapath/exec.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const HELD = 8000;
// A connection expected to succeed gets this long: under CI's load a SYN may wait for a CPU (a
// refusal never answers, so a longer bound cannot turn a refusal into a pass).
const OK_WITHIN = 8000;

const policy = (auth: boolean): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-in, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
${auth ? "    authentication: {mode: required}\n" : ""}  - fromEndpoints: [{matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    authentication: {mode: required}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
${auth ? "    authentication: {mode: required}\n" : ""}`;

type PairRow = {
  source: number;
  destination: number;
  node: string;
  sourceNode: string;
  destinationNode: string;
};
const pairs = async (n: LabNode): Promise<PairRow[]> =>
  ((await n.client.request("GET", "/v1/auth/pairs")) as { pairs: PairRow[] }).pairs;
interface Peers {
  peers: { node: string; since: string; requests: number; protocol?: string }[];
  served: { channels: number; requests: number; unsigned: number; accepted: number; refused: number } | null;
}
const peers = async (n: LabNode): Promise<Peers> => (await n.client.request("GET", "/v1/auth/peers")) as Peers; // prettier-ignore
const channelTo = async (n: LabNode, to: string): Promise<Peers["peers"][number] | undefined> => (await peers(n)).peers.find((p) => p.node === to); // prettier-ignore

/** A TLS client in `netns` offering a pooled connection with the key and certificate in `dir`, sending one pair request: what came back. */
function forgedClient(netns: string, host: string, dir: string): string {
  const js = `const tls=require("tls"),fs=require("fs");const s=tls.connect({host:"${host}",port:4250,servername:"node.auth.membrane",key:fs.readFileSync("${dir}/key.pem"),cert:fs.readFileSync("${dir}/cert.pem"),rejectUnauthorized:false,minVersion:"TLSv1.3"});let out="silent";s.on("secureConnect",()=>{const b=Buffer.from(JSON.stringify({t:"pair",id:1,src:300,dst:301,side:"d",nonce:Buffer.alloc(32,1).toString("base64"),chain:[s.getCertificate().raw.toString("base64")],sig:"AAAA"}));const h=Buffer.alloc(4);h.writeUInt32BE(b.length);s.write(Buffer.concat([h,b]))});s.on("data",()=>{out="answered"});s.on("error",(e)=>{if(out==="silent")out="refused "+(e.code||e.message)});s.on("close",()=>{if(out==="silent")out="closed"});setTimeout(()=>{console.log(out);process.exit(0)},2000);`; // prettier-ignore
  const r = spawnSync("ip", ["netns", "exec", netns, process.execPath, "-e", js], { encoding: "utf8", timeout: 15_000 }); // prettier-ignore
  return `${r.stdout.trim()} ${r.stderr.trim()}`.trim();
}

/** Packets the node's NFQUEUE rule has sent to the agent so far (iptables counter of MEMBRANE-AUTH). */
async function queuedPackets(n: LabNode): Promise<number> {
  const r = await runRaw(["iptables", "-w", "-L", "MEMBRANE-AUTH", "-n", "-v", "-x"], { netns: n.netns });
  const m = /^\s*(\d+)\s+\d+\s+NFQUEUE/m.exec(r.stdout);
  assert.ok(m, r.stdout + r.stderr);
  return Number(m[1]);
}
const handshakes = (n: LabNode): number => (n.logs().match(/"msg":"pair authenticated"/g) ?? []).length;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(200)) if (await ok()) return;
  assert.fail(`timed out waiting for ${what}`);
}

/** A TCP connection from `netns` kept open (a byte every 200 ms, echoed); `closed` once it ends. */
function hold(
  netns: string,
  host: string,
  port: number,
): { echoes: () => number; closed: () => string | undefined; stop: () => void } {
  // prettier-ignore
  const js = `const s=require("net").connect(${port},"${host}");let t;s.on("connect",()=>{t=setInterval(()=>s.write("x"),200)});s.on("data",()=>process.stdout.write("e\\n"));const end=(w)=>{clearInterval(t);process.stdout.write("closed "+w+"\\n");process.exit(0)};s.on("error",(e)=>end(e.code));s.on("close",()=>end("close"));`; // prettier-ignore
  const p = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", js], { stdio: ["ignore", "pipe", "ignore"] }); // prettier-ignore
  let out = "";
  p.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return {
    echoes: () => (out.match(/^e$/gm) ?? []).length,
    closed: () => /closed (\S+)/.exec(out)?.[1],
    stop: () => p.kill("SIGKILL"),
  };
}

describe("mutual authentication across nodes (root, etcd)", { skip }, () => {
  test("one handshake between agents authenticates the pair on both nodes; refusals drop 189; the port is guarded; revocation cuts connections", async () => {
    let lab: LabCluster | undefined;
    const probes: Probe[] = [];
    const held: ReturnType<typeof hold>[] = [];
    const dir = mkdtempSync(join(tmpdir(), "membrane-forged-"));
    const prefix = uniquePrefix("hau");
    try {
      // --auth-prefill local: cross-node pairs on their held first packet (parts 1-7); part 8 turns
      // the cross-node prefill on (the agents' default) through the API.
      lab = await startLabCluster({ prefix, nodes: 2, spiffe: true, logLevel: "info", leaseTtl: 30, agentArgs: ["--auth-prefill", "local"] }); // prettier-ignore
      const [n1a, n2] = lab.nodes as [LabNode, LabNode];
      let n1 = n1a;
      const server = await createEndpoint(n2, "server", { app: "server" });
      const client = await createEndpoint(n1, "client", { app: "client" });
      const other = await createEndpoint(n1, "other", { app: "other" });
      await waitRemote(n1, [server.ipv4]);
      await waitRemote(n2, [client.ipv4, other.ipv4]);
      await applyAndWait(n1, policy(true), "auth.yaml");
      const sp = Probe.start(server.netns);
      const cp = Probe.start(client.netns);
      const op = Probe.start(other.netns);
      probes.push(sp, cp, op);
      await sp.listen("tcp", 80);
      // Each node publishes its handshake port and roots; each trusts the other's.
      await until("both nodes publish their handshake port", async () => {
        const nodes = (await n1.client.request("GET", "/v1/nodes")) as { name: string }[];
        return nodes.length === 2 && /"msg":"API listening"/.test(n2.logs());
      });

      // 1. The first connection: held on n1 (egress), authenticated with n2's agent, released.
      assert.equal(await cp.tcp(server.ipv4, 80, HELD), "ok");
      // The agent logs before it releases the packet, but its log reaches us through a pipe.
      await until("n1's log of the handshake", async () => handshakes(n1) > 0).catch(() => undefined);
      assert.equal(handshakes(n1), 1, n1.logs().slice(-3000));
      assert.equal(handshakes(n2), 0, "n2 answered; its ingress check found the entry (no second handshake)");
      const row = (r: PairRow[]): string[] => r.map((p) => `${p.source}>${p.destination}@${p.sourceNode}>${p.destinationNode}`); // prettier-ignore
      const want = [`${client.identity}>${server.identity}@n1>n2`];
      // The initiator releases the held packet first and writes its kernel entry right after
      // (manager.ts); /v1/auth/pairs lists the kernel's entries: wait for the write, not a time.
      await until(
        "the pair in both kernels",
        async () => (await pairs(n1)).length > 0 && (await pairs(n2)).length > 0,
      );
      assert.deepEqual(row(await pairs(n1)), want);
      assert.deepEqual(row(await pairs(n2)), want);
      for (let i = 0; i < 3; i++) assert.equal(await cp.tcp(server.ipv4, 80, OK_WITHIN), "ok");
      assert.equal(handshakes(n1) + handshakes(n2), 1, "later connections skip the queue on both nodes");
      //    That handshake was one request on n1's pooled connection to n2 (opened when n2 appeared).
      const ch = await channelTo(n1, "n2");
      assert.equal(ch?.requests, 1, JSON.stringify(await peers(n1)));
      assert.equal((await peers(n2)).served?.accepted, 1, JSON.stringify(await peers(n2)));

      // 1b. The client's SVID rotated on n1: the pair authenticates again over the same connection.
      await n1.client.request("POST", "/v1/auth/rotate", { identity: client.identity });
      await until("the pair authenticated again", async () => (await channelTo(n1, "n2"))?.requests === 2); // prettier-ignore
      assert.equal((await channelTo(n1, "n2"))?.since, ch?.since, "the same pooled connection");
      assert.deepEqual(row(await pairs(n1)), want);
      //     The server's end revoked on n2: n1's next rotation is refused and n1 removes the pair.
      await n2.client.request("POST", "/v1/auth/revoke", { identity: server.identity });
      await n1.client.request("POST", "/v1/auth/rotate", { identity: client.identity });
      await until("n1 to remove the pair", async () => (await pairs(n1)).length === 0);
      await n2.client.request("POST", "/v1/auth/restore", { identity: server.identity });
      assert.equal(await cp.tcp(server.ipv4, 80, HELD), "ok", "authenticated again on its next first packet");
      await until("the pair in both kernels again", async () => (await pairs(n1)).length > 0 && (await pairs(n2)).length > 0); // prettier-ignore
      //     Protocol v2 (pair-proof.ts): each end proves its SVID's key once per pooled connection.
      //     The rotations' requests carried new client leaves (signed); n2's answers after the first
      //     went unsigned (its leaf proven by it). The client's pair removed on n1 and its next first
      //     packet: the same leaves on both sides, neither signed; n2 counts one unsigned request.
      assert.equal((await channelTo(n1, "n2"))?.protocol, "v2");
      await n1.client.request("POST", "/v1/auth/revoke", { identity: client.identity });
      await n1.client.request("POST", "/v1/auth/restore", { identity: client.identity });
      assert.equal(await cp.tcp(server.ipv4, 80, HELD), "ok", "authenticated with proofs made before");
      const answerProofs = (): unknown[] => n2.logs().split("\n").filter((l) => l.includes('"msg":"authentication answer profile"')).map((l) => (JSON.parse(l) as { proof: unknown }).proof); // prettier-ignore
      await until("n2's answer profiles", async () => answerProofs().length >= 4);
      const [signed, proven] = ["signed", "proven"];
      assert.deepEqual(answerProofs(), [{ request: signed, answer: signed }, { request: signed, answer: proven }, { request: signed, answer: proven }, { request: proven, answer: proven }]); // prettier-ignore
      assert.equal((await peers(n2)).served?.unsigned, 1, JSON.stringify(await peers(n2)));

      // 1c. Strangers. An underlay address no node has: the guard drops its handshake connection.
      const x = `${prefix}-x`;
      const sh = (args: string[]): void =>
        void spawnSync(args[0] as string, args.slice(1), { stdio: "ignore" });
      sh(["ip", "netns", "add", x]);
      sh(["ip", "-n", `${prefix}-ul`, "link", "add", `${prefix}x`, "type", "veth", "peer", "name", "ul0", "netns", x]); // prettier-ignore
      sh(["ip", "-n", `${prefix}-ul`, "link", "set", `${prefix}x`, "master", "br0", "up"]);
      sh(["ip", "-n", x, "addr", "add", "172.31.0.99/24", "dev", "ul0"]);
      sh(["ip", "-n", x, "link", "set", "ul0", "up"]);
      assert.ok(await pings(x, n1.ip), "the stranger is on the underlay");
      const xp = Probe.start(x);
      probes.push(xp);
      assert.equal(await xp.tcp(n2.ip, 4250, 1500), "timeout", "the guard drops a stranger's handshake");
      //     From n1's own address (past the guard): a well-formed node certificate naming n1, signed
      //     by a CA n1 does not publish: no pooled connection, no answer to its pair request.
      const ca = await SpiffeCa.open({ trustDomain: "lab.membrane" });
      const keys = await newKeyPair();
      const forged = await ca.sign(nodeSpiffeId("lab.membrane", "n1"), keys.publicKey);
      const pem = (d: Buffer, l: string): string => `-----BEGIN ${l}-----\n${d.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END ${l}-----\n`; // prettier-ignore
      writeFileSync(join(dir, "key.pem"), pem(await exportPkcs8(keys.privateKey), "PRIVATE KEY"));
      writeFileSync(join(dir, "cert.pem"), pem(forged.chain[0] as Buffer, "CERTIFICATE"));
      const served = (await peers(n2)).served?.accepted ?? 0;
      const got = forgedClient(n1.netns, n2.ip, dir);
      assert.notEqual(got.split(" ")[0], "answered", got);
      assert.equal(
        (await peers(n2)).served?.accepted ?? 0,
        served,
        "nothing was served to the forged client",
      );

      // 2. A pair the peer node refuses: other's SVID withheld on n1 (its node); n2 holds the
      //    first packet (ingress), n1 refuses to present other's SVID: drop 189 with a flow on n2.
      await n1.client.request("POST", "/v1/auth/revoke", { identity: other.identity });
      assert.notEqual(await op.tcp(server.ipv4, 80, 3000), "ok");
      await until("n2's AUTH_REQUIRED flow", async () =>
        (await readFlows(n2)).some((f) => f.drop_reason === 189 && f.source?.identity === other.identity),
      );
      assert.match(n2.logs(), /mutual authentication failed: the packet drops/);

      // 3. The handshake port, from a pod (not a node address): the kernel drops it, no answer.
      assert.equal(await op.tcp(n2.ip, 4250, 1500), "timeout");
      const guard = await runRaw(["nft", "list", "chain", "inet", "membrane_auth", "guard_in"], {
        netns: n2.netns,
      });
      assert.match(guard.stdout, /tcp dport 4250 ip saddr != @peers4 counter packets [1-9]/, guard.stdout);

      // 4. A flood of first packets of a refused pair (other is still revoked): 300 connections at
      //    once. The queue is bounded and a refused pair is refused again without a handshake; the
      //    authenticated pair's connections and the node's other traffic go on meanwhile.
      const refusedBefore = (n1.logs().match(/refused a handshake from a peer node/g) ?? []).length;
      const flood = spawn("ip", ["netns", "exec", other.netns, process.execPath, "-e", `const net=require("net");for(let i=0;i<300;i++){const s=net.connect(80,"${server.ipv4}");s.on("error",()=>{});setTimeout(()=>s.destroy(),4000)}setTimeout(()=>process.exit(0),4500)`], { stdio: "ignore" }); // prettier-ignore
      const during = await Promise.all([
        cp.tcp(server.ipv4, 80, OK_WITHIN),
        cp.tcp(server.ipv4, 80, OK_WITHIN),
      ]);
      await new Promise((r) => flood.once("exit", r));
      assert.deepEqual(during, ["ok", "ok"], "the authenticated pair is unaffected by the flood");
      const attempts =
        (n1.logs().match(/refused a handshake from a peer node/g) ?? []).length - refusedBefore;
      assert.ok(
        attempts < 30,
        `300 first packets cost ${attempts} handshake attempts (refusals are remembered)`,
      );
      await n1.client.request("POST", "/v1/auth/restore", { identity: other.identity });
      assert.equal(await op.tcp(server.ipv4, 80, HELD), "ok", "the queue still answers after the flood");

      // 5. n1's agent killed (-9) and started again, a connection of the pair open throughout: the
      //    pair stays in both kernels, the connection is never cut, nothing authenticates again.
      const kept = hold(client.netns, server.ipv4, 80);
      held.push(kept);
      await until("the kept connection to echo", async () => kept.echoes() > 2);
      const n1b = await lab.restart("n1");
      n1 = n1b;
      await until("n1 to adopt the pair", async () => row(await pairs(n1b)).join() === want.join());
      await sleep(5500); // more than a judging pass after the cluster is attached
      const echoes = kept.echoes();
      await until(
        "the kept connection to echo after the restart",
        async () => kept.echoes() > echoes + 2,
      ).catch((e: Error) => {
        // prettier-ignore
        const why = (n: LabNode): string => n.logs().split("\n").filter((l) => /pair|cut|auth/.test(l)).slice(-8).join("\n"); // prettier-ignore
        throw new Error(
          `${e.message}; closed: ${kept.closed()}; echoes ${kept.echoes()}\nn1:\n${why(n1b)}\nn2:\n${why(n2)}`,
        );
      });
      assert.equal(kept.closed(), undefined, "the pair's connection survived the restart");
      assert.equal(await cp.tcp(server.ipv4, 80, OK_WITHIN), "ok");
      assert.equal(handshakes(n1b), 0, "nothing re-authenticated after the restart");
      kept.stop();
      await until("n1's new pooled connection to n2", async () => (await channelTo(n1b, "n2")) !== undefined); // prettier-ignore

      // 6. Revocation by policy: the rule no longer requires auth -> the pair leaves both kernels and
      //    its established connection is cut (within 30 s).
      const conn = hold(client.netns, server.ipv4, 80);
      held.push(conn);
      await until("the held connection to echo", async () => conn.echoes() > 2);
      await applyAndWait(n1, policy(false), "auth.yaml");
      const noClientPair = async (n: LabNode): Promise<boolean> => !(await pairs(n)).some((p) => p.source === client.identity); // prettier-ignore
      await until("the pair to leave both kernels", async () => (await noClientPair(n1)) && (await noClientPair(n2))); // prettier-ignore
      await until("the pair's connection to be cut", async () => conn.closed() !== undefined);
      assert.equal(
        await cp.tcp(server.ipv4, 80, OK_WITHIN),
        "ok",
        "still allowed, now without authentication",
      );

      // 7. Revocation by identity: auth required again, then the client's only pod relabelled (its
      //    old identity exists nowhere any more): the pair goes and its connection is cut.
      await applyAndWait(n1, policy(true), "auth.yaml");
      assert.equal(await cp.tcp(server.ipv4, 80, HELD), "ok");
      assert.ok(
        ((await channelTo(n1, "n2"))?.requests ?? 0) >= 1,
        "over the restarted agent's pooled connection",
      );
      await until("the pair again", async () => (await pairs(n1)).length === 1);
      const conn2 = hold(client.netns, server.ipv4, 80);
      held.push(conn2);
      await until("the second held connection to echo", async () => conn2.echoes() > 2);
      await n1.client.request("PATCH", "/v1/endpoints/default/client/labels", { labels: { v: "2" } });
      await until("the old identity's pair to go", async () => !(await pairs(n1)).some((p) => p.source === client.identity)); // prettier-ignore
      await until("its connection to be cut", async () => conn2.closed() !== undefined);

      // 8. Cross-node pairs authenticated ahead of their first packet: the cross-node prefill on
      //    (the default of `membrane agent`): the relabelled client's new identity and `other`
      //    (n2's ingress rules) get their pairs over the pooled connections with no packet sent;
      //    the connections then pass without queueing a packet on either node. A revoked end is
      //    never authenticated ahead; restored, it is.
      const c2 = ((await n1.client.request("GET", "/v1/endpoints/default/client")) as { identity: number }).identity; // prettier-ignore
      assert.ok(Number.isInteger(c2) && c2 !== client.identity, `the relabelled client's identity ${c2}`);
      const has = async (n: LabNode, src: number): Promise<boolean> => (await pairs(n)).some((p) => p.source === src && p.destination === server.identity); // prettier-ignore
      // other's pair (authenticated on its first packet in part 4) leaves n2: n2 must make it again.
      await n2.client.request("POST", "/v1/auth/revoke", { identity: other.identity });
      await n2.client.request("POST", "/v1/auth/restore", { identity: other.identity });
      assert.equal(await has(n2, other.identity), false);
      const queued0 = [await queuedPackets(n1), await queuedPackets(n2)];
      const hs0 = handshakes(n1) + handshakes(n2);
      await assert.rejects(n1.client.request("POST", "/v1/auth/prefill", { remote: "yes" }), /remote must be true or false/); // prettier-ignore
      for (const n of [n1, n2]) await n.client.request("POST", "/v1/auth/prefill", { remote: true });
      await until("the new identity's pair on both nodes, ahead", async () => (await has(n1, c2)) && (await has(n2, c2))); // prettier-ignore
      await until("other's pair on n2, ahead", async () => has(n2, other.identity));
      assert.ok(handshakes(n1) + handshakes(n2) > hs0, "authenticated by the agents");
      assert.equal(await cp.tcp(server.ipv4, 80, OK_WITHIN), "ok");
      assert.equal(await op.tcp(server.ipv4, 80, OK_WITHIN), "ok");
      assert.deepEqual([await queuedPackets(n1), await queuedPackets(n2)], queued0, "no packet was held on either node"); // prettier-ignore
      const pre = (await peers(n1)) as Peers & {
        prefill?: { remote: boolean; done: number; passes: number };
      };
      assert.ok(pre.prefill?.remote === true && pre.prefill.done >= 1, JSON.stringify(pre.prefill));
      //    Revocation is unchanged: revoked on n1, the pair goes there and a pass does not bring it back.
      await n1.client.request("POST", "/v1/auth/revoke", { identity: c2 });
      assert.equal(await has(n1, c2), false);
      const passes = async (): Promise<number> => ((await peers(n1)) as typeof pre).prefill?.passes ?? 0; // prettier-ignore
      const p0 = await passes();
      await n1.client.request("POST", "/v1/auth/prefill", { remote: true }); // a pass now
      await until("a cross-node prefill pass on n1", async () => (await passes()) > p0);
      assert.equal(await has(n1, c2), false, "a revoked identity is not authenticated ahead");
      await n1.client.request("POST", "/v1/auth/restore", { identity: c2 });
      await n1.client.request("POST", "/v1/auth/prefill", { remote: true });
      await until("the restored identity's pair on n1, ahead", async () => has(n1, c2));

      // No private key in any log or answer.
      for (const n of [n1, n2]) {
        const answers = JSON.stringify([await pairs(n), await n.client.request("GET", "/v1/status")]);
        for (const text of [n.logs(), answers]) assert.ok(!/PRIVATE KEY|BEGIN EC|MIG[0-9A-Za-z+/]{60}/.test(text), "a private key leaked"); // prettier-ignore
      }
    } finally {
      for (const h of held) h.stop();
      for (const p of probes) p.stop();
      await lab?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
