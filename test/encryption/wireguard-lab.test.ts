// WireGuard between two real `membrane agent --encryption wireguard --encryption-strict` processes
// (root; wireguard-go here, no kernel module): a capture of the whole underlay proves that marker
// payloads between pods on different nodes never cross it in plaintext (also while n1's agent is
// killed with -9 and restarted, traffic flowing); a node cannot speak through its tunnel for
// addresses outside its pod CIDR; strict mode drops pod traffic that a plaintext route would take,
// with a flow; with the strict table removed by hand the same marker IS captured (the capture can fail).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { createEndpoint, readFlows, waitRemote } from "../../src/lab/cluster-api.js";
import type { EncryptionStatus } from "../../src/encryption/wireguard.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { Capture, sendUdp, UdpSink, UdpStream } from "./wg-traffic.js";
import { until } from "../support/until.js";

const skip =
  rootSkipReason() ??
  skipWithoutEtcd() ??
  (["wireguard-go", "wg", "tcpdump"].find((b) => runRawSync(b))
    ? "needs wireguard-go, wireguard-tools and tcpdump"
    : undefined);

function runRawSync(bin: string): boolean {
  // true when missing
  return (process.env["PATH"] ?? "").split(":").every((d) => {
    try {
      statSync(join(d, bin));
      return false;
    } catch {
      return true;
    }
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function encryption(n: LabNode): Promise<EncryptionStatus> {
  return (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus;
}

describe("WireGuard transparent encryption between lab nodes (root)", { skip }, () => {
  test("markers never cross the underlay in plaintext (also through kill -9); cryptokey routing drops foreign sources; strict mode drops a plaintext route with a flow", async () => {
    const prefix = uniquePrefix("wg");
    const mark = (tag: string): string => `MBRMARK-${tag}-${randomBytes(6).toString("hex")}`;
    let lab: LabCluster | undefined;
    let cap: Capture | undefined;
    const sinks: UdpSink[] = [];
    try {
      lab = await startLabCluster({
        prefix,
        nodes: 2,
        leaseTtl: 30,
        encryption: "wireguard",
        encryptionStrict: true,
      });
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      cap = await Capture.start(`${prefix}-ul`, join(lab.dir, "underlay.pcap"));
      const client = await createEndpoint(n1, "client", { app: "client" });
      const server = await createEndpoint(n2, "server", { app: "server" });
      await waitRemote(n1, [server.ipv4]);
      await waitRemote(n2, [client.ipv4]);

      // Each node publishes its key and has the other as its one peer, allowed IPs = its pod CIDR.
      const s2 = await encryption(n2);
      await until("n1 to have n2 as its peer", async () => (await encryption(n1)).peers.length > 0);
      const s1 = await encryption(n1);
      assert.deepEqual(
        s1.peers.map((p) => [p.node, p.publicKey]),
        [["n2", s2.publicKey]],
        JSON.stringify(s1),
      );
      assert.equal(s1.mode, "wireguard");
      assert.equal(s1.strict, true);
      const n2Cidr = server.ipv4.replace(/\.\d+$/, ".0/24");
      assert.deepEqual(s1.peers[0]?.allowedIps, [n2Cidr]);
      const key = statSync(join(n1.stateDir, "wireguard", "private.key"));
      assert.equal(key.mode & 0o777, 0o600, "the private key file is 0600");
      const route = await runRaw(["ip", "route", "show", n2Cidr], { netns: n1.netns });
      assert.match(
        route.stdout,
        new RegExp(`dev ${s1.interface}`),
        "n2's pods are routed through the tunnel",
      );

      // 1. Pod to pod across nodes: delivered, and a handshake happened.
      const sink = await UdpSink.start(server.netns, 7001);
      sinks.push(sink);
      const a = mark("a");
      for (let i = 0; i < 3 && !sink.received().includes(a); i++) {
        await sendUdp(client.netns, server.ipv4, 7001, a);
        await sink.waitFor(a, 1500);
      }
      assert.ok(sink.received().includes(a), "client (n1) -> server (n2) through the tunnel");
      await until(
        "a handshake with n2",
        async () => (await encryption(n1)).peers[0]?.lastHandshake !== undefined,
      );

      // 2. Cryptokey routing: n2's node address (not in its allowed IPs) reaches nothing on n1
      //    through the tunnel; n2's pod does.
      const back = await UdpSink.start(client.netns, 7002);
      sinks.push(back);
      const spoof = mark("spoof");
      const legit = mark("legit");
      for (let i = 0; i < 3; i++) {
        // From n2's node namespace with its underlay address as source (not n2's pod CIDR).
        await sendUdp(n2.netns, client.ipv4, 7002, spoof, n2.ip);
        await sendUdp(server.netns, client.ipv4, 7002, legit);
        await sleep(200);
      }
      assert.ok(await back.waitFor(legit), "server (n2's pod) -> client (n1)");
      assert.ok(
        !back.received().includes(spoof),
        "a source outside n2's allowed IPs is dropped by n1's tunnel",
      );

      // 3. kill -9 n1's agent and start it again while a stream flows: wireguard-go and the
      //    strict table outlive it; the stream keeps arriving. (The lease is 30 s: a node whose
      //    key expires leaves the cluster and its peers drop it, as they should; a restart on this
      //    loaded machine takes 5-15 s.)
      const streamMark = mark("stream");
      const stream = new UdpStream(client.netns, server.ipv4, 7001, streamMark, 50);
      await sleep(500);
      const pid = n1.pid;
      const n1b = await lab.restart("n1");
      assert.notEqual(n1b.pid, pid);
      await sleep(500);
      const sent = await stream.stop();
      await sleep(300);
      const got = sink
        .received()
        .split(";")
        .filter((x) => x.includes(streamMark)).length;
      assert.ok(got >= sent * 0.9, `the stream kept flowing through the restart: ${got} of ${sent} arrived`);
      const after = await encryption(n1b);
      assert.equal(after.publicKey, s1.publicKey, "the restarted agent kept its key");
      assert.deepEqual(
        after.peers.map((p) => p.node),
        ["n2"],
      );
      assert.ok(!n1b.logs().includes(await privateKeyText(n1b)), "the private key is not in the agent's log");
      assert.ok(!JSON.stringify(after).includes(await privateKeyText(n1b)), "nor in its API");

      // 4. Strict mode: a plaintext route to n2's pods (as a broken or racing reconcile would leave)
      //    -> dropped in n1's kernel, with a flow naming the reason.
      await runRaw(["ip", "route", "replace", n2Cidr, "via", n2.ip, "proto", "211"], { netns: n1.netns });
      const b = mark("strict");
      for (let i = 0; i < 3; i++) await sendUdp(client.netns, server.ipv4, 7001, b);
      await sleep(500);
      assert.ok(!sink.received().includes(b), "strict mode dropped the plaintext packets");
      await until("a drop flow UNENCRYPTED_TRAFFIC on n1", async () =>
        (await readFlows(n1b, { allowlist: [{ verdict: ["DROPPED"] }] })).some(
          (f) =>
            f.drop_reason_desc === "UNENCRYPTED_TRAFFIC" &&
            f.IP?.destination === server.ipv4 &&
            f.IP.encrypted !== true,
        ),
      );

      // 5. The control: without the strict table the same route leaks, and the capture sees it.
      const del = await runRaw(["nft", "delete", "table", "inet", "membrane_encrypt"], { netns: n1.netns });
      assert.equal(del.status, 0, del.stderr);
      await runRaw(["ip", "route", "replace", n2Cidr, "via", n2.ip, "proto", "211"], { netns: n1.netns });
      const via = (await runRaw(["ip", "route", "get", server.ipv4], { netns: n1.netns })).stdout;
      const c = mark("plain");
      for (let i = 0; i < 3 && !sink.received().includes(c); i++) {
        await sendUdp(client.netns, server.ipv4, 7001, c);
        await sink.waitFor(c, 1000);
      }
      assert.ok(sink.received().includes(c), "the plaintext route delivers once strict mode is gone");

      const pcap = await cap.stop();
      cap = undefined;
      assert.ok(pcap.length > 1000, "the capture saw the tunnel's traffic");
      assert.ok(pcap.includes(c), `the capture sees a plaintext marker (so it could fail); route: ${via}`);
      for (const m of [a, legit, spoof, b])
        assert.ok(!pcap.includes(m), `marker ${m} never crossed the underlay in plaintext`);
      assert.ok(
        !pcap.includes(streamMark),
        "no stream marker crossed the underlay in plaintext (restart included)",
      );
    } finally {
      for (const s of sinks) s.stop();
      cap?.kill();
      await lab?.stop();
    }
  });
});

async function privateKeyText(n: LabNode): Promise<string> {
  const r = await runRaw(["cat", join(n.stateDir, "wireguard", "private.key")]);
  return r.stdout.trim();
}
