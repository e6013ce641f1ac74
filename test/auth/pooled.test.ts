// Pooled authentication connections across nodes, for real (root, etcd): two `membrane agent
// --spiffe` processes of a lab cluster, a server pod on n2 whose ingress rule requires
// authentication, client pods on n1, real TCP connections (no timing is asserted).
//  - n2 holds each new pair's first SYN and authenticates it with ONE request on the TLS connection
//    it keeps to n1's agent: two new pairs, one connection, two requests served by n1;
//  - an SVID rotated on n2 authenticates the pair again over the same connection (the pair's open
//    connection flows on); with the peer's identity revoked on n1, the next rotation is refused and
//    n2 removes the pair and cuts its open connection;
//  - n1's agent killed and started again: n2's next new pair opens a new pooled connection;
//  - strangers: a namespace on the underlay with an address no node has gets no answer on the
//    handshake port (the kernel's guard); from n1's own address, a client presenting a well-formed
//    node certificate of n1 signed by a CA n2 does not trust never gets an answer to a pair request.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { applyAndWait, createEndpoint, waitRemote } from "../../src/lab/cluster-api.js";
import { Probe } from "../../src/probe/probe.js";
import { SpiffeCa } from "../../src/spiffe/ca.js";
import { exportPkcs8, newKeyPair } from "../../src/spiffe/certs.js";
import { nodeSpiffeId } from "../../src/auth/node-cert.js";
import { pings } from "../../src/lab/underlay.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
// A connection expected to succeed gets this long (a refusal never answers: a longer bound cannot
// turn a refusal into a pass).
const OK_WITHIN = 8000;

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-in, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    authentication: {mode: required}
`;

interface Peers {
  transport: string;
  peers: { node: string; since: string; requests: number }[];
  client: { connects: number; requests: number; failures: number; retries: number } | null;
  served: { channels: number; requests: number; accepted: number; refused: number } | null;
}
const peers = async (n: LabNode): Promise<Peers> => (await n.client.request("GET", "/v1/auth/peers")) as Peers; // prettier-ignore
const pairs = async (n: LabNode): Promise<{ source: number }[]> =>
  ((await n.client.request("GET", "/v1/auth/pairs")) as { pairs: { source: number }[] }).pairs;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(150)) if (await ok()) return;
  assert.fail(`timed out waiting for ${what}`);
}

/** A TCP connection from `netns` kept open (a byte every 200 ms, echoed); `closed` once it ends. */
function hold(
  netns: string,
  host: string,
): { echoes: () => number; closed: () => boolean; stop: () => void } {
  const js = `const s=require("net").connect(80,"${host}");let t;s.on("connect",()=>{t=setInterval(()=>s.write("x"),200)});s.on("data",()=>process.stdout.write("e\\n"));const end=()=>{clearInterval(t);process.stdout.write("closed\\n");process.exit(0)};s.on("error",end);s.on("close",end);`; // prettier-ignore
  const p = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", js], { stdio: ["ignore", "pipe", "ignore"] }); // prettier-ignore
  let out = "";
  p.stdout.on("data", (d: Buffer) => (out += d.toString()));
  return { echoes: () => (out.match(/^e$/gm) ?? []).length, closed: () => out.includes("closed"), stop: () => p.kill("SIGKILL") }; // prettier-ignore
}

/** A TLS client in `netns` that offers a pooled connection with `cert`/`key` and sends one pair request: what came back. */
function forgedClient(netns: string, host: string, dir: string): string {
  const js = `const tls=require("tls"),fs=require("fs");const s=tls.connect({host:"${host}",port:4250,servername:"node.auth.membrane",key:fs.readFileSync("${dir}/key.pem"),cert:fs.readFileSync("${dir}/cert.pem"),rejectUnauthorized:false,minVersion:"TLSv1.3"});let out="silent";s.on("secureConnect",()=>{const b=Buffer.from(JSON.stringify({t:"pair",id:1,src:300,dst:301,side:"d",nonce:Buffer.alloc(32,1).toString("base64"),chain:[s.getCertificate().raw.toString("base64")],sig:"AAAA"}));const h=Buffer.alloc(4);h.writeUInt32BE(b.length);s.write(Buffer.concat([h,b]))});s.on("data",()=>{out="answered"});s.on("error",(e)=>{if(out==="silent")out="refused "+(e.code||e.message)});s.on("close",()=>{if(out==="silent")out="closed"});setTimeout(()=>{console.log(out);process.exit(0)},3000);`; // prettier-ignore
  const r = spawnSync("ip", ["netns", "exec", netns, process.execPath, "-e", js], { encoding: "utf8", timeout: 15_000 }); // prettier-ignore
  return `${r.stdout.trim()} ${r.stderr.trim()}`.trim();
}

describe("pooled authentication connections across nodes (root, etcd)", { skip }, () => {
  test("pairs authenticate as requests on one connection per peer node; rotation and revocation still cut; a restarted peer is reconnected; strangers get nothing", async () => {
    let lab: LabCluster | undefined;
    const probes: Probe[] = [];
    const held: ReturnType<typeof hold>[] = [];
    const dir = mkdtempSync(join(tmpdir(), "m3a-forged-"));
    const t0 = Date.now();
    const step = (what: string): void =>
      void process.stderr.write(`pooled: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    try {
      const prefix = uniquePrefix("m3a");
      lab = await startLabCluster({ prefix, nodes: 2, spiffe: true, logLevel: "info", leaseTtl: 30 });
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      const server = await createEndpoint(n2, "server", { app: "server" });
      const a = await createEndpoint(n1, "a", { role: "client", slot: "a" });
      const b = await createEndpoint(n1, "b", { role: "client", slot: "b" });
      await waitRemote(n1, [server.ipv4]);
      await waitRemote(n2, [a.ipv4, b.ipv4]);
      await applyAndWait(n1, POLICY, "pooled.yaml");
      const sp = Probe.start(server.netns);
      const ap = Probe.start(a.netns);
      const bp = Probe.start(b.netns);
      probes.push(sp, ap, bp);
      await sp.listen("tcp", 80);

      step("lab ready");
      // 1. Two new pairs: n2 holds each first SYN; each is ONE request on the connection n2 keeps to n1.
      // n2 opens it when n1 appears; n1 counts it once n2's node certificate passed.
      await until("n2's pooled connection to n1", async () => (await peers(n2)).peers.some((p) => p.node === "n1") && ((await peers(n1)).served?.channels ?? 0) > 0); // prettier-ignore
      assert.equal(await ap.tcp(server.ipv4, 80, OK_WITHIN), "ok");
      assert.equal(await bp.tcp(server.ipv4, 80, OK_WITHIN), "ok");
      const p2 = await peers(n2);
      const p1 = await peers(n1);
      const toN1 = async (): Promise<Peers["peers"][number] | undefined> => (await peers(n2)).peers.find((p) => p.node === "n1"); // prettier-ignore
      const ch = await toN1();
      assert.equal(p2.transport, "channel");
      assert.equal(ch?.requests, 2, `both pairs were requests on one connection: ${JSON.stringify(p2)}`);
      assert.equal(p1.served?.accepted, 2, `n1 answered both pairs on it: ${JSON.stringify(p1)}`);
      const viaChannel = (): boolean => n2.logs().split("\n").some((l) => l.includes('"msg":"pair authenticated"') && l.includes('"via":"channel"')); // prettier-ignore
      await until("n2's log of a pair authenticated via the channel", async () => viaChannel());
      await until("both pairs in n2's kernel", async () => (await pairs(n2)).length === 2);

      step("step 1 done");
      // 2. A rotation of the server's SVID on n2: the pairs authenticate again over the same
      //    connection; a's open connection flows on.
      const conn = hold(a.netns, server.ipv4);
      held.push(conn);
      await until("a's held connection to echo", async () => conn.echoes() > 2);
      await n2.client.request("POST", "/v1/auth/rotate", { identity: server.identity });
      await until("the pairs authenticated again", async () => ((await peers(n1)).served?.accepted ?? 0) >= 4); // prettier-ignore
      const again = await toN1();
      assert.equal(again?.since, ch?.since, "the same connection");
      assert.equal(again?.requests, 4, JSON.stringify(again));
      const echoes = conn.echoes();
      await until("a's connection to echo after the rotation", async () => conn.echoes() > echoes + 2);
      assert.equal(conn.closed(), false);
      assert.equal((await pairs(n2)).length, 2);

      //    a's identity revoked on n1 (its node): the next rotation on n2 is refused for a's pair,
      //    which leaves n2's kernel, and its open connection is cut; b's pair stays.
      await n1.client.request("POST", "/v1/auth/revoke", { identity: a.identity });
      await n2.client.request("POST", "/v1/auth/rotate", { identity: server.identity });
      await until("a's pair to leave n2", async () => !(await pairs(n2)).some((p) => p.source === a.identity)); // prettier-ignore
      await until("a's open connection to be cut", async () => conn.closed());
      assert.ok(
        (await pairs(n2)).some((p) => p.source === b.identity),
        "b's pair stays",
      );
      assert.notEqual(await ap.tcp(server.ipv4, 80, 2000), "ok", "a's new connection is refused");
      await n1.client.request("POST", "/v1/auth/restore", { identity: a.identity });

      step("step 2 done");
      // 3. n1's agent killed and started again: n2's next new pair goes over a new connection.
      const connects = (await peers(n2)).client?.connects ?? 0;
      await lab.restart("n1");
      await n2.client.request("POST", "/v1/auth/revoke", { identity: b.identity }); // b's pair is new again
      await n2.client.request("POST", "/v1/auth/restore", { identity: b.identity });
      assert.equal(await bp.tcp(server.ipv4, 80, OK_WITHIN), "ok", n2.logs().slice(-2000));
      assert.ok(((await peers(n2)).client?.connects ?? 0) > connects, JSON.stringify(await peers(n2)));

      step("step 3 done");
      // 4. Strangers. A namespace on the underlay with an address no node has: the kernel's guard
      //    drops its connection to the handshake port (no answer at all).
      const x = `${prefix}-x`;
      const sh = (args: string[]): void =>
        void spawnSync(args[0] as string, args.slice(1), { stdio: "ignore" });
      sh(["ip", "netns", "add", x]);
      sh(["ip", "-n", `${prefix}-ul`, "link", "add", `${prefix}x`, "type", "veth", "peer", "name", "ul0", "netns", x]); // prettier-ignore
      sh(["ip", "-n", `${prefix}-ul`, "link", "set", `${prefix}x`, "master", "br0", "up"]);
      sh(["ip", "-n", x, "addr", "add", "172.31.0.99/24", "dev", "ul0"]);
      sh(["ip", "-n", x, "link", "set", "ul0", "up"]);
      const xp = Probe.start(x); // after the address: the probe answers from it
      probes.push(xp);
      assert.ok(await pings(x, n1.ip), "the stranger is on the underlay");
      assert.equal(await xp.tcp(n2.ip, 4250, 1500), "timeout", "the guard drops a stranger's handshake");
      //    From n1's own address (past the guard): a node certificate naming n1, well formed, but
      //    signed by a CA that n1 does not publish: no pooled connection, no answer to the request.
      const ca = await SpiffeCa.open({ trustDomain: "lab.membrane" });
      const keys = await newKeyPair();
      const { chain } = await ca.sign(nodeSpiffeId("lab.membrane", "n1"), keys.publicKey);
      const pem = (d: Buffer, l: string): string => `-----BEGIN ${l}-----\n${d.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END ${l}-----\n`; // prettier-ignore
      writeFileSync(join(dir, "key.pem"), pem(await exportPkcs8(keys.privateKey), "PRIVATE KEY"));
      writeFileSync(join(dir, "cert.pem"), pem(chain[0] as Buffer, "CERTIFICATE"));
      const served = (await peers(n2)).served?.accepted ?? 0;
      const forged = forgedClient(n1.netns, n2.ip, dir);
      assert.notEqual(forged.split(" ")[0], "answered", forged);
      assert.equal(
        (await peers(n2)).served?.accepted ?? 0,
        served,
        "nothing was served to the forged client",
      );
      step("step 4 done");
    } finally {
      for (const h of held) h.stop();
      for (const p of probes) p.stop();
      await lab?.stop();
      rmSync(dir, { recursive: true, force: true });
      step("stopped");
    }
  });
});
