// WireGuard faults, key rotation and node-to-node encryption between two real `membrane agent
// --encryption wireguard --encryption-strict --encryption-node-to-node` processes (root;
// wireguard-go here). One lab, a capture of the whole underlay throughout: no marker crosses it in
// plaintext while
//   - the node's own traffic goes to the other node (node-to-node, WireGuard's own UDP excepted);
//   - both nodes rotate their keys under a TCP stream (no reset, nothing lost, peers learn the keys);
//   - a packet from outside a peer's allowed IPs comes through its tunnel (dropped);
//   - a peer's interface holds a key other than the one it published (nothing gets through);
//   - a peer's agent is killed with -9 (traffic flows, strict keeps dropping plaintext), then the
//     whole peer restarts (its tunnel gone; traffic resumes once it is back).
// A plaintext marker sent on purpose to a non-node underlay address IS captured (the capture can fail).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../../src/lab/cluster-api.js";
import type { EncryptionStatus } from "../../src/encryption/wireguard.js";
import { generateWgKeyPair } from "../../src/encryption/keys.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { statusRows } from "../../src/cli/commands/get.js";
import { uninstall } from "../../src/agent/uninstall.js";
import { Capture, sendUdp, TcpSink, TcpStream, tcpResetCounters, UdpSink } from "./wg-traffic.js";
import { until } from "../support/until.js";

const missing = (bin: string): boolean =>
  (process.env["PATH"] ?? "").split(":").every((d) => {
    try {
      statSync(join(d, bin));
      return false;
    } catch {
      return true;
    }
  });

const skip =
  rootSkipReason() ??
  skipWithoutEtcd() ??
  (["wireguard-go", "wg", "tcpdump", "socat", "nstat"].some(missing)
    ? "needs wireguard-go, wireguard-tools, tcpdump, socat and nstat (iproute2)"
    : undefined);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function encryption(n: LabNode): Promise<EncryptionStatus> {
  return (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus;
}

/** Sends `m` (UDP) until the sink has it or `tries` are spent; true when it arrived. */
async function deliver(
  from: string,
  to: string,
  port: number,
  sink: UdpSink,
  m: string,
  tries = 3,
  bind?: string,
): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    await sendUdp(from, to, port, m, bind);
    if (await sink.waitFor(m, 1500)) return true;
  }
  return false;
}

describe("WireGuard faults, key rotation and node-to-node (root)", { skip }, () => {
  test("rotation under TCP without resets; node-to-node; spoofed source, wrong key, kill -9 and a peer restart: never plaintext on the underlay", async () => {
    const prefix = uniquePrefix("hwg");
    const mark = (tag: string): string => `MBRMARK-${tag}-${randomBytes(6).toString("hex")}`;
    const secret: string[] = []; // markers that must never be in the capture
    let lab: LabCluster | undefined;
    let cap: Capture | undefined;
    const stops: (() => void)[] = [];
    const t00 = Date.now();
    const step = (what: string): void =>
      console.log(`# ${((Date.now() - t00) / 1000).toFixed(1)} s: ${what}`);
    try {
      lab = await startLabCluster({
        prefix,
        nodes: 2,
        leaseTtl: 30,
        encryption: "wireguard",
        encryptionStrict: true,
        agentArgs: ["--encryption-node-to-node"],
      });
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      cap = await Capture.start(`${prefix}-ul`, join(lab.dir, "underlay.pcap"));
      const client = await createEndpoint(n1, "client", { app: "client" });
      const server = await createEndpoint(n2, "server", { app: "server" });
      await waitRemote(n1, [server.ipv4]);
      await waitRemote(n2, [client.ipv4]);
      await until("both peers with node-to-node", async () => {
        const [a, b] = [await encryption(n1), await encryption(n2)];
        return a.peers.some((p) => p.nodeToNode) && b.peers.some((p) => p.nodeToNode);
      });
      const s1 = await encryption(n1);
      assert.equal(s1.nodeToNode, true);
      assert.ok(s1.peers[0]?.allowedIps.includes(`${n2.ip}/32`), JSON.stringify(s1.peers));
      assert.equal(s1.peers[0]?.strict, true);
      assert.equal(s1.peers[0]?.mode, "wireguard");

      step("node-to-node");
      // 1. Node-to-node: the node's own traffic to n2's address goes through the tunnel, while
      //    WireGuard's own UDP (fwmark) still reaches n2's address by the underlay.
      const viaTunnel = (await runRaw(["ip", "route", "get", n2.ip], { netns: n1.netns })).stdout;
      assert.match(viaTunnel, new RegExp(`dev ${s1.interface}`), viaTunnel);
      const viaUnderlay = (
        await runRaw(["ip", "route", "get", n2.ip, "mark", "0x2000000"], { netns: n1.netns })
      ).stdout;
      assert.doesNotMatch(viaUnderlay, new RegExp(`dev ${s1.interface}`), viaUnderlay);
      const hostSink = await UdpSink.start(n2.netns, 7100);
      stops.push(() => hostSink.stop());
      const host = mark("host");
      secret.push(host);
      assert.ok(await deliver(n1.netns, n2.ip, 7100, hostSink, host), "n1's host -> n2's host delivered");

      step("rotation");
      // 2. Key rotation on both nodes under a TCP stream between their pods.
      const tcp = await TcpSink.start(server.netns, server.ipv4, 7200);
      stops.push(() => tcp.stop());
      const streamMark = mark("tcp");
      secret.push(streamMark);
      const before = {
        c: await tcpResetCounters(client.netns),
        s: await tcpResetCounters(server.netns),
      };
      const stream = new TcpStream(client.netns, server.ipv4, 7200, streamMark, 20);
      assert.ok(await tcp.waitFor(`${streamMark}-5;`), "the stream flows");
      const t0 = Date.now();
      const old1 = s1.publicKey;
      const old2 = (await encryption(n2)).publicKey;
      // While n1 rotates, n2 holds n1's announced next key as a second peer (rotation.ts, step 1).
      let rotating = true;
      let sawNext: EncryptionStatus["peers"][number] | undefined;
      const watch = (async (): Promise<void> => {
        for (; rotating && !sawNext; await sleep(100))
          sawNext = (await encryption(n2)).peers.find((p) => p.next === true);
      })();
      const r1 = (await n1.client.request("POST", "/v1/encryption/rotate-key")) as {
        previousPublicKey: string;
        publicKey: string;
      };
      rotating = false;
      await watch;
      assert.equal(sawNext?.publicKey, r1.publicKey, "n2 held n1's next key before n1 switched");
      assert.equal(sawNext?.mode, "wireguard (next key)");
      assert.deepEqual(sawNext?.allowedIps, [], "the next-key entry owns no addresses");
      assert.equal(r1.previousPublicKey, old1);
      assert.notEqual(r1.publicKey, old1);
      const r2 = (await n2.client.request("POST", "/v1/encryption/rotate-key")) as { publicKey: string };
      assert.notEqual(r2.publicKey, old2);
      // Each learns the other's new key through the store; the next-key entries are gone.
      await until("the peers to hold each other's new keys", async () => {
        const [a, b] = [await encryption(n1), await encryption(n2)];
        return (
          a.peers.length === 1 &&
          a.peers[0]?.publicKey === r2.publicKey &&
          b.peers.length === 1 &&
          b.peers[0]?.publicKey === r1.publicKey
        );
      });
      await sleep(1000);
      const t1 = Date.now();
      const end = await stream.stop();
      await sleep(500);
      const lines = tcp
        .received()
        .split(";")
        .filter((x) => x.startsWith(streamMark));
      const gap = tcp.maxGap(t0, t1);
      assert.equal(end.code, 0, `the TCP connection ended cleanly (no reset): ${end.stderr}`);
      assert.equal(lines.length, end.sent, `every write arrived: ${lines.length} of ${end.sent}`);
      assert.equal(lines.at(-1), `${streamMark}-${end.sent - 1}`, "in order, to the last");
      const after = { c: await tcpResetCounters(client.netns), s: await tcpResetCounters(server.netns) };
      assert.deepEqual(after, before, "no TCP reset or abort in either pod");
      const a1 = await encryption(n1);
      assert.equal(a1.publicKey, r1.publicKey);
      assert.equal(a1.rotation?.rotations, 1);
      assert.ok(a1.peers[0]?.lastHandshake !== undefined && a1.peers[0].handshake === "ok");
      console.log(`# rotation of both keys under TCP: longest pause at the receiver ${gap} ms`);

      step("spoofing");
      // 3. Spoofing: n2 sends through its tunnel from an address outside its allowed IPs -> n1
      //    drops it; from its pod and (node-to-node) its node address -> delivered.
      const back = await UdpSink.start(client.netns, 7300);
      stops.push(() => back.stop());
      await runRaw(["ip", "addr", "add", "10.251.0.2/32", "dev", "lo"], { netns: n2.netns });
      const spoof = mark("spoof");
      const legit = mark("legit");
      secret.push(spoof, legit);
      for (let i = 0; i < 3; i++) await sendUdp(n2.netns, client.ipv4, 7300, spoof, "10.251.0.2");
      assert.ok(await deliver(server.netns, client.ipv4, 7300, back, legit), "n2's pod -> n1's pod");
      assert.ok(!back.received().includes(spoof), "a source outside n2's allowed IPs is dropped by n1");

      step("wrong key");
      // 4. A wrong key: n2's interface holds a key other than the one it published. n1 starts a
      //    fresh session (its peer entry re-made by hand) and nothing gets through either way.
      const wg1 = a1.interface;
      const wg2 = (await encryption(n2)).interface;
      const peerOf2 = a1.peers[0];
      assert.ok(peerOf2);
      const wrongFile = join(lab.dir, "wrong.key");
      writeFileSync(wrongFile, generateWgKeyPair()[0] + "\n", { mode: 0o600 });
      await runRaw(["wg", "set", wg2, "private-key", wrongFile], { netns: n2.netns });
      await runRaw(["wg", "set", wg1, "peer", peerOf2.publicKey, "remove"], { netns: n1.netns });
      await runRaw(
        [
          ...["wg", "set", wg1, "peer", peerOf2.publicKey, "endpoint", peerOf2.endpoint],
          ...["allowed-ips", peerOf2.allowedIps.join(",")],
        ],
        { netns: n1.netns },
      );
      const udp = await UdpSink.start(server.netns, 7400);
      stops.push(() => udp.stop());
      const wrongOut = mark("wrong-out");
      const wrongBack = mark("wrong-back");
      secret.push(wrongOut, wrongBack);
      for (let i = 0; i < 3; i++) {
        await sendUdp(client.netns, server.ipv4, 7400, wrongOut);
        await sendUdp(server.netns, client.ipv4, 7300, wrongBack);
        await sleep(300);
      }
      await sleep(1000);
      assert.ok(!udp.received().includes(wrongOut), "n1 -> n2 (wrong key) got nothing through");
      assert.ok(!back.received().includes(wrongBack), "n2 (wrong key) -> n1 got nothing through");
      // The right key back: traffic resumes (WireGuard retries its handshake every 5 s).
      await runRaw(["wg", "set", wg2, "private-key", join(n2.stateDir, "wireguard", "private.key")], {
        netns: n2.netns,
      });
      // n2 sends first: its staged packet starts a handshake at once (n1's retry may be 5 s away).
      const healed = mark("healed");
      const healedBack = mark("healed-back");
      secret.push(healed, healedBack);
      assert.ok(
        await deliver(server.netns, client.ipv4, 7300, back, healedBack, 10),
        "n2 -> n1 once the key is right",
      );
      assert.ok(
        await deliver(client.netns, server.ipv4, 7400, udp, healed),
        "n1 -> n2 once the key is right",
      );

      step("kill -9");
      // 5. kill -9 n2's agent: encrypted traffic keeps flowing; strict mode keeps dropping a
      //    plaintext route to n1's pods (the interface and the strict table outlive the agent).
      //    (Through the underlay device by name: with node-to-node, `via <n1's address>` alone
      //    resolves through the tunnel too.)
      await lab.killNode("n2");
      const dead = mark("dead");
      secret.push(dead);
      assert.ok(await deliver(client.netns, server.ipv4, 7400, udp, dead), "n1 -> n2 with n2's agent dead");
      const n1Cidr = client.ipv4.replace(/\.\d+$/, ".0/24");
      const rr = await runRaw(
        ["ip", "route", "replace", n1Cidr, "via", n1.ip, "dev", "ul0", "proto", "211"],
        {
          netns: n2.netns,
        },
      );
      assert.equal(rr.status, 0, rr.stderr);
      const via = (await runRaw(["ip", "route", "get", client.ipv4], { netns: n2.netns })).stdout;
      assert.doesNotMatch(via, new RegExp(`dev ${wg2}`), `a plaintext route: ${via}`);
      const plain = mark("plain-dead");
      secret.push(plain);
      for (let i = 0; i < 3; i++) await sendUdp(server.netns, client.ipv4, 7300, plain);
      await sleep(500);
      assert.ok(!back.received().includes(plain), "n2's strict table dropped plaintext with its agent dead");
      const table = await runRaw(["nft", "list", "chain", "inet", "membrane_encrypt", "strict"], {
        netns: n2.netns,
      });
      assert.match(table.stdout, /counter packets [1-9]/, "the strict drop counted them");
      await runRaw(["ip", "route", "replace", n1Cidr, "dev", wg2, "proto", "211"], { netns: n2.netns });

      step("peer restart");
      // 6. The whole peer restarts: its tunnel gone (a reboot), then its agent starts again with
      //    the same state. Meanwhile n1 sends nothing in clear; afterwards traffic resumes.
      await runRaw(["ip", "link", "del", wg2], { netns: n2.netns });
      const down = mark("down");
      secret.push(down);
      for (let i = 0; i < 3; i++) await sendUdp(client.netns, server.ipv4, 7400, down);
      await lab.restartNode("n2");
      const up = mark("up");
      const upBack = mark("up-back");
      secret.push(up, upBack);
      assert.ok(
        await deliver(server.netns, client.ipv4, 7300, back, upBack, 10),
        "n2 -> n1 after n2 restarted",
      );
      assert.ok(await deliver(client.netns, server.ipv4, 7400, udp, up), "n1 -> n2 after n2 restarted");
      const host2 = mark("host2");
      secret.push(host2);
      assert.ok(await deliver(n1.netns, n2.ip, 7100, hostSink, host2, 10), "node-to-node again");

      // The control: a marker sent to an underlay address that is no node goes in clear.
      const ul = `${prefix}-ul`;
      const probe = n1.ip.replace(/\.\d+$/, ".250");
      await runRaw(["ip", "addr", "add", `${probe}/24`, "dev", "br0"], { netns: ul });
      const control = mark("control");
      for (let i = 0; i < 3; i++) await sendUdp(n1.netns, probe, 9, control);
      const pcap = await cap.stop();
      cap = undefined;
      assert.ok(pcap.includes(control), "the capture sees a plaintext marker (so it could fail)");
      for (const m of secret)
        assert.ok(!pcap.includes(m), `marker ${m} never crossed the underlay in plaintext`);

      step("status");
      // 7. Status for people and machines: per peer mode, strict, key age, last handshake.
      // `membrane get status` prints these rows of the agent's GET /v1/status (in-process: a CLI
      // start costs 10 s on a loaded machine; the command itself is the rows and a table).
      const rows = statusRows((await n1.client.request("GET", "/v1/status")) as Record<string, unknown>);
      const text = rows.map((r) => r.join("  ")).join("\n");
      assert.match(text, /encryption {2}wireguard \(wireguard-go\) on mwg[0-9a-f]+, strict on, node-to-node/);
      assert.match(
        text,
        /encryption peer n2 {2}wireguard, strict on, key age \d+[smhd], last handshake \d+[smhd] ago \(ok\)/,
      );
      const st = await encryption(n1); // what `encryption status -o json` prints
      assert.deepEqual(
        st.peers.map((p) => [p.node, p.mode, p.strict, p.handshake, typeof p.keyAgeSeconds]),
        [["n2", "wireguard", true, "ok", "number"]],
      );
      const priv = readFileSync(join(n1.stateDir, "wireguard", "private.key"), "utf8").trim();
      assert.ok(!JSON.stringify(st).includes(priv) && !text.includes(priv), "no private key in the status");

      step("uninstall");
      // 8. Uninstall (agent stopped): the tunnel, the strict table and node-to-node routing go,
      //    and wireguard-go with its interface.
      const wg1Sock = `/var/run/wireguard/${wg1}.sock`;
      assert.ok(existsSync(wg1Sock), "wireguard-go of n1 runs");
      await lab.killNode("n1");
      const { removed } = await uninstall({
        ...{ nodeNetns: n1.netns, stateDir: n1.stateDir, socketPath: n1.socket },
        ...{ netnsPrefix: `${n1.netns}-`, table: "membrane", podCidr4: n1Cidr },
      }); // what `membrane uninstall --node-netns ... -o json` prints
      for (const what of [
        `WireGuard interface ${wg1}`,
        "nftables table inet membrane_encrypt",
        "node-to-node routing",
      ])
        assert.ok(
          removed.some((r) => r.startsWith(what)),
          `uninstall removed ${what}: ${removed.join("; ")}`,
        );
      await until("wireguard-go of n1 to exit", async () => !existsSync(wg1Sock), 5000);
      assert.ok(!existsSync(join(n1.stateDir, "wireguard", "private.key")), "the key is gone");
    } finally {
      for (const s of stops) s();
      cap?.kill();
      await lab?.stop();
    }
  });
});
