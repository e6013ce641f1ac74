// The mTLS node tunnel between two real `membrane agent --encryption mtls-tunnel --encryption-strict`
// processes (root): pods' TCP to the other node's pods is carried over TLS 1.3 + HTTP/2 CONNECT with
// the source identity's SVID, and the receiving node's kernel policy judges that identity (allowed A
// passes, B is refused) although both arrive from the same tunnel address; hand-made peers are
// refused for a client certificate of another trust domain, of a rogue root, of a node, of a
// reserved identity or of an identity the presenting node hosts no endpoint of, and accepted (the
// control) with an SVID of n1's own CA; n2's flows and `policy why` name the source pod (A's or B's
// address, identity and node), not the pod gateway the tunnel delivers from; after a kill -9 and restart of n1's agent the tunnel carries again (strict table kept); UDP to a remote pod
// (not carried) is dropped by strict mode with a flow; a capture of the whole underlay never holds
// a marker, and does hold one once the strict table is removed by hand (the capture can fail).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runRaw } from "../../src/datapath/exec.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { applyAndWait, createEndpoint, readFlows, waitRemote } from "../../src/lab/cluster-api.js";
import type { EncryptionStatus } from "../../src/encryption/mode.js";
import type { Flow } from "../../src/observe/flow.js";
import { CaFile } from "../../src/spiffe/ca-file.js";
import { SpiffeCa } from "../../src/spiffe/ca.js";
import { exportPkcs8, newKeyPair } from "../../src/spiffe/certs.js";
import { rootSkipReason } from "../datapath/harness.js";
import { cli } from "../cli/run-cli.js";
import { Capture, sendUdp, UdpSink } from "./wg-traffic.js";
import { until } from "../support/until.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CLIENT = fileURLToPath(new URL("./mtls-client.js", import.meta.url));

async function status(n: LabNode): Promise<EncryptionStatus> {
  return (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus;
}

/** `socat` TCP echo server in a pod namespace (own process group). */
function echoServer(netns: string, port: number): ChildProcess {
  return spawn("ip", ["netns", "exec", netns, "socat", `TCP-LISTEN:${port},reuseaddr,fork`, "EXEC:cat"], {
    stdio: "ignore",
    detached: true,
  });
}

/** Sends `marker` over TCP from a pod namespace; what came back (empty: refused or reset). */
async function tcpEcho(netns: string, ip: string, port: number, marker: string): Promise<string> {
  const r = await runRaw(
    ["ip", "netns", "exec", netns, "socat", "-t", "3", "-T", "8", "-", `TCP:${ip}:${port},connect-timeout=5`],
    { stdin: marker + "\n" },
  );
  return r.stdout;
}

/** A hand-made tunnel peer in `netns` (mtls-client.ts) presenting `creds`; its JSON answer. */
async function handPeer(
  dir: string,
  netns: string,
  to: { host: string; port: number; authority: string },
  creds: { cert: string; key: string },
  marker: string,
): Promise<{ status?: number; reply?: string; error?: string }> {
  const tag = randomBytes(4).toString("hex");
  const cert = join(dir, `c-${tag}.pem`);
  const key = join(dir, `k-${tag}.pem`);
  writeFileSync(cert, creds.cert, { mode: 0o600 });
  writeFileSync(key, creds.key, { mode: 0o600 });
  const r = await runRaw([
    "ip", "netns", "exec", netns, process.execPath, CLIENT,
    JSON.stringify({ ...to, cert, key, marker }),
  ]); // prettier-ignore
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as { status?: number; error?: string };
}

async function svid(ca: SpiffeCa, id: string): Promise<{ cert: string; key: string }> {
  const k = await newKeyPair();
  const { chain } = await ca.sign(id, k.publicKey);
  const pem = (await exportPkcs8(k.privateKey)).toString("base64").replace(/(.{64})/g, "$1\n");
  return {
    cert: chain.map((d) => new X509Certificate(d).toString()).join(""),
    key: `-----BEGIN PRIVATE KEY-----\n${pem}\n-----END PRIVATE KEY-----\n`,
  };
}

describe("mTLS node tunnel between lab nodes (root)", { skip }, () => {
  test("the receiving kernel judges the certificate's identity (A passes, B refused); foreign, rogue, node and reserved certificates refused; strict drops what is not carried; agent kill -9 (tunnel gone, fail closed, strict still drops) and peer restart; no marker on the underlay; uninstall removes the redirect", async () => {
    const prefix = `m4e${randomBytes(2).toString("hex")}`;
    const mark = (tag: string): string => `MBRMARK-${tag}-${randomBytes(6).toString("hex")}`;
    let lab: LabCluster | undefined;
    let cap: Capture | undefined;
    const procs: ChildProcess[] = [];
    const sinks: UdpSink[] = [];
    try {
      lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 30, encryption: "mtls-tunnel", encryptionStrict: true }); // prettier-ignore
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      cap = await Capture.start(`${prefix}-ul`, join(lab.dir, "underlay.pcap"));
      const a = await createEndpoint(n1, "a", { app: "a" });
      const b = await createEndpoint(n1, "b", { app: "b" });
      const server = await createEndpoint(n2, "server", { app: "server" });
      procs.push(echoServer(server.netns, 8080));
      await applyAndWait(
        n1,
        [
          "apiVersion: cilium.io/v2",
          "kind: CiliumNetworkPolicy",
          "metadata: {name: server-from-a, namespace: default}",
          "spec:",
          "  endpointSelector: {matchLabels: {app: server}}",
          "  ingress:",
          "  - fromEndpoints: [{matchLabels: {app: a}}]",
          "    toPorts: [{ports: [{port: '8080', protocol: TCP}, {port: '7001', protocol: UDP}]}]",
          "---",
          "apiVersion: cilium.io/v2",
          "kind: CiliumNetworkPolicy",
          "metadata: {name: a-to-server, namespace: default}", // under policy: its allowed connections are flows
          "spec:",
          "  endpointSelector: {matchLabels: {app: a}}",
          "  egress:",
          "  - toEndpoints: [{matchLabels: {app: server}}]",
          "    toPorts: [{ports: [{port: '8080', protocol: TCP}, {port: '7001', protocol: UDP}]}]",
        ].join("\n"),
        "server-from-a.yaml",
      );
      await waitRemote(n1, [server.ipv4]);
      await waitRemote(n2, [a.ipv4, b.ipv4]);
      await until("n1 to have n2 as its tunnel peer", async () => (await status(n1)).peers.length > 0);

      // 1. A -> server through the tunnel: echoed. B -> server: refused by n2's kernel, though both
      //    reach the server from n2's tunnel (same address): the identity came from the certificate.
      const ma = mark("a");
      let got = "";
      for (let i = 0; i < 5 && !got.includes(ma); i++) got = await tcpEcho(a.netns, server.ipv4, 8080, ma);
      assert.ok(got.includes(ma), `a -> server through the tunnel: ${JSON.stringify(got)}`);
      const mb = mark("b");
      assert.ok(!(await tcpEcho(b.netns, server.ipv4, 8080, mb)).includes(mb), "b -> server refused on n2");
      const s1 = await status(n1);
      const p1 = s1.peers.find((p) => p.node === "n2");
      assert.equal(s1.mode, "mtls-tunnel");
      assert.ok(
        p1 && (p1.tunnel?.streamsTotal ?? 0) >= 2 && p1.lastHandshake !== undefined,
        JSON.stringify(s1),
      );
      assert.equal(p1?.handshake, "ok", JSON.stringify(p1));
      assert.ok(
        (p1?.tunnel?.sessions ?? 0) >= 2,
        `one session per source identity: ${JSON.stringify(p1)} ${[n1, n2]
          .map((n) =>
            n
              .logs()
              .split("\n")
              .filter((l) => /tunnel|refus/i.test(l))
              .slice(-15)
              .join("\n"),
          )
          .join("\n----\n")}`,
      );
      // n2's tunnel tried B's connection and its kernel never answered (dropped: 504 after 5 s).
      let dbg = "";
      await until(
        "n2 to count B's stream refused",
        async () => {
          dbg = JSON.stringify(await status(n2));
          const p2 = (await status(n2)).peers.find((p) => p.node === "n1");
          return p2?.tunnel !== undefined && p2.tunnel.inboundAccepted >= 1 && p2.tunnel.inboundRefused >= 1;
        },
        { detail: () => `${dbg} ${n2.logs().slice(-4000)}` },
      );

      // The receiving side names the source pod, not the pod gateway the tunnel delivers from:
      // n2's flows carry A's (B's) address, the certificate's identity and node n1, and
      // `membrane policy why` on n2 explains B's drop as from B and proposes allowing B's labels.
      const gw2 = server.ipv4.replace(/\.\d+$/, ".1");
      const fromPod = (f: Flow, ep: { ipv4: string; identity: number }): boolean =>
        f.IP?.source === ep.ipv4 &&
        f.IP.destination === server.ipv4 &&
        f.IP.encrypted === true &&
        f.source?.identity === ep.identity &&
        f.source.node_name === "n1";
      await until("n2's flow of A's connection naming A", async () =>
        (await readFlows(n2, { allowlist: [{ verdict: ["FORWARDED"] }] })).some((f) => fromPod(f, a)),
      );
      await until("n2's drop flow of B's connection naming B", async () =>
        (await readFlows(n2, { allowlist: [{ verdict: ["DROPPED"] }] })).some((f) => fromPod(f, b)),
      );
      const why = cli("policy", "why", "--to-pod", "default/server", "--socket", n2.socket, "-o", "json");
      assert.equal(why.code, 0, why.stderr);
      const wa = JSON.parse(why.stdout) as { query: { from: unknown }; lines: string[]; proposal?: string; verified?: boolean }; // prettier-ignore
      assert.deepEqual(wa.query.from, { kind: "ip", ip: b.ipv4 }, why.stdout);
      assert.ok(wa.lines[0]?.includes(b.ipv4) && !why.stdout.includes(gw2), why.stdout);
      assert.match(wa.proposal ?? "", /app: b\b/, why.stdout);
      assert.equal(wa.verified, true, why.stdout);

      // The process that parses the network's bytes runs as the tunnel user, without capabilities.
      const pid = s1.tunnel?.pid as number;
      const st = readFileSync(`/proc/${pid}/status`, "utf8");
      assert.match(st, /\nUid:\s+1338\s+1338\s+1338\s+1338\n/, "the tunnel dropped root");
      assert.match(st, /\nGid:\s+1338\s/, "the tunnel runs as its group");
      assert.match(st, /\nCapEff:\s+0+\n/, "the tunnel holds no capability");

      // 2. Hand-made peers from n1's address (the address n2 knows as its peer n1).
      const to = { host: n2.ip, port: 15008, authority: `${server.ipv4}:8080` };
      const own = await SpiffeCa.open({ trustDomain: "cluster.local", file: new CaFile(join(n1.stateDir, "mtls-tunnel")) }); // prettier-ignore
      const evil = await SpiffeCa.open({ trustDomain: "evil.local" });
      const rogue = await SpiffeCa.open({ trustDomain: "cluster.local" });
      const idA = `spiffe://cluster.local/identity/${a.identity}`;
      const ok = await handPeer(lab.dir, n1.netns, to, await svid(own, idA), mark("ctl"));
      assert.equal(ok.status, 200, `control: n1's own CA, identity A: ${JSON.stringify(ok)}`);
      for (const [what, creds] of [
        ["another trust domain", await svid(evil, `spiffe://evil.local/identity/${a.identity}`)],
        ["a rogue root of the same trust domain", await svid(rogue, idA)],
        ["a node's SVID", await svid(own, "spiffe://cluster.local/node/n1")],
        ["a reserved identity (host)", await svid(own, "spiffe://cluster.local/identity/1")],
        ["an identity n1 hosts no endpoint of (the server's, on n2)", await svid(own, `spiffe://cluster.local/identity/${server.identity}`)], // prettier-ignore
      ] as const) {
        const r = await handPeer(lab.dir, n1.netns, to, creds, mark("x"));
        assert.ok(r.status === undefined && r.reply === undefined, `${what} refused: ${JSON.stringify(r)}`);
      }
      const rb = await handPeer(lab.dir, n1.netns, to, await svid(own, `spiffe://cluster.local/identity/${b.identity}`), mark("b2")); // prettier-ignore
      assert.notEqual(
        rb.status,
        200,
        `identity B's certificate is refused by n2's policy: ${JSON.stringify(rb)}`,
      );

      // 3. kill -9 n1's agent: its tunnel process follows it (the IPC channel closes), the table
      //    stays. While it is down a's TCP to the server finds no listener at the redirect (reset,
      //    never sent in clear) and strict mode drops a's UDP; then it starts again and a new tunnel
      //    with the same CA carries A's connections again.
      const sink = await UdpSink.start(server.netns, 7001);
      sinks.push(sink);
      await lab.killNode("n1");
      await until("n1's tunnel process to exit with its agent", async () => !existsSync(`/proc/${pid}`));
      const mdown = mark("down");
      assert.equal(await tcpEcho(a.netns, server.ipv4, 8080, mdown), "", "no TCP while n1's tunnel is down");
      const mdu = mark("downudp");
      for (let i = 0; i < 3; i++) await sendUdp(a.netns, server.ipv4, 7001, mdu);
      assert.equal(await sink.waitFor(mdu, 1000), false, "strict mode drops UDP while n1's agent is down");
      const n1b = await lab.restartNode("n1");
      const mr = mark("restart");
      await until("a -> server through n1's new tunnel", async () => (await tcpEcho(a.netns, server.ipv4, 8080, mr)).includes(mr), 30_000); // prettier-ignore
      // The peer restarts (kill -9 of n2's agent and its tunnel, then a new one): A's connections
      // are carried again, by a new tunnel process on n2.
      const pid2 = (await status(n2)).tunnel?.pid;
      const n2b = await lab.restart("n2");
      const mp = mark("peer");
      await until("a -> server once n2's tunnel is back", async () => (await tcpEcho(a.netns, server.ipv4, 8080, mp)).includes(mp), 30_000); // prettier-ignore
      assert.notEqual((await status(n2b)).tunnel?.pid, pid2, "n2 runs a new tunnel process");
      assert.deepEqual(
        (await status(n1b)).peers.map((p) => p.node),
        ["n2"],
      );
      await until("a flow of a's TCP to the server with IP.encrypted on n1", async () =>
        (await readFlows(n1b)).some(
          (f) =>
            f.IP?.destination === server.ipv4 &&
            f.IP.encrypted === true &&
            f.l4 !== undefined &&
            "TCP" in f.l4,
        ),
      );

      // 4. Strict: UDP is not carried; to a remote pod it is dropped on n1 with a flow.
      const mu = mark("udp");
      for (let i = 0; i < 3; i++) await sendUdp(a.netns, server.ipv4, 7001, mu);
      await sleep(500);
      assert.ok(!sink.received().includes(mu), "strict mode dropped the plaintext UDP");
      await until("a drop flow UNENCRYPTED_TRAFFIC on n1", async () =>
        (await readFlows(n1b, { allowlist: [{ verdict: ["DROPPED"] }] })).some(
          (f) => f.drop_reason_desc === "UNENCRYPTED_TRAFFIC" && f.IP?.destination === server.ipv4,
        ),
      );

      // 5. No secret in the API or the log: the CA's root key.
      const caKeys = (JSON.parse(readFileSync(join(n1.stateDir, "mtls-tunnel", "ca.json"), "utf8")) as { roots: { key: string }[] }).roots.map((r) => r.key); // prettier-ignore
      const api = JSON.stringify(await status(n1));
      for (const k of caKeys)
        assert.ok(!api.includes(k) && !n1.logs().includes(k), "the CA key is never shown");

      // 6. The control: without the strict table UDP leaks, and the capture sees it.
      const del = await runRaw(["nft", "delete", "table", "inet", "membrane_encrypt"], { netns: n1.netns });
      assert.equal(del.status, 0, del.stderr);
      const mc = mark("plain");
      for (let i = 0; i < 3 && !sink.received().includes(mc); i++) {
        await sendUdp(a.netns, server.ipv4, 7001, mc);
        await sink.waitFor(mc, 1000);
      }
      assert.ok(sink.received().includes(mc), "plaintext UDP delivered once strict mode is gone");
      const pcap = await cap.stop();
      cap = undefined;
      assert.ok(pcap.length > 1000, "the capture saw the tunnel's traffic");
      assert.ok(pcap.includes(mc), "the capture sees a plaintext marker (so it could fail)");
      for (const m of [ma, mb, mu, mdown, mdu, mr, mp])
        assert.ok(!pcap.includes(m), `marker ${m} never crossed the underlay in plaintext`);

      // 7. `membrane uninstall` of n2 (agent killed) removes the tunnel's redirect and strict table.
      await lab.killNode("n2");
      const u = cli("uninstall", "--node-netns", n2.netns, "--state-dir", n2b.stateDir, "--socket", n2b.socket, "--netns-prefix", `${n2.netns}-`, "--table", "membrane", "--pod-cidr", server.ipv4.replace(/\.\d+$/, ".0/24"), "-o", "json"); // prettier-ignore
      assert.equal(u.code, 0, u.stderr);
      const removed = (JSON.parse(u.stdout) as { removed: string[] }).removed;
      assert.ok(
        removed.some((x) => x.startsWith("nftables table inet membrane_encrypt")),
        u.stdout,
      );
      const left = await runRaw(["nft", "list", "table", "inet", "membrane_encrypt"], { netns: n2.netns });
      assert.notEqual(left.status, 0, "the tunnel's redirect and strict table are gone");
    } finally {
      for (const s of sinks) s.stop();
      for (const p of procs) if (p.pid !== undefined) try { process.kill(-p.pid, "SIGKILL"); } catch { /* gone */ } // prettier-ignore
      cap?.kill();
      await lab?.stop();
    }
  });
});
