// IPsec node-key rotation between two real `membrane agent --encryption ipsec --encryption-strict`
// processes (root; strongSwan's charon with kernel-libipsec: this kernel has no ESP). A capture of
// the whole underlay runs throughout, and a TCP stream of marker writes flows between a pod on n1
// and a pod on n2 while first n1, then n2 rotates its key (`POST /v1/encryption/rotate-key`):
//   - while n1 rotates, n2 pins n1's announced next key beside its current one (status);
//   - n1's IKE SA to n2 is made again under the new key (a new IKE SA, the old one closed), charon
//     holds the new key and no longer the old one, node.key holds the new key (0600);
//   - afterwards each node pins only the other's new key;
//   - the stream ends cleanly (no reset in either pod), every write arrived, in order;
//   - no marker ever crossed the underlay in plaintext, while a plaintext datagram between the two
//     node addresses (not IPsec's traffic) IS in the capture (the capture could fail).
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster, type LabNode } from "../../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../../src/lab/cluster-api.js";
import type { EncryptionStatus } from "../../src/encryption/mode.js";
import { charonRunDir } from "../../src/encryption/ipsec/charon.js";
import { ViciClient } from "../../src/encryption/ipsec/vici-client.js";
import { connName, parseListSas } from "../../src/encryption/ipsec/conns.js";
import { viciKeyIds } from "../../src/encryption/ipsec/rekey-auth.js";
import { rootSkipReason } from "../datapath/harness.js";
import { Capture, sendUdp, TcpSink, TcpStream, tcpResetCounters, UdpSink } from "./wg-traffic.js";
import { until } from "../support/until.js";

const missing = [
  "/usr/sbin/charon-systemd",
  "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
  "/usr/bin/tcpdump",
].filter((f) => {
  try {
    statSync(f);
    return false;
  } catch {
    return true;
  }
});
const skip =
  rootSkipReason() ??
  skipWithoutEtcd() ??
  (missing.length > 0 ? `needs ${missing.join(", ")} (scripts/install-system-deps.sh)` : undefined);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function encryption(n: LabNode): Promise<EncryptionStatus> {
  return (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus;
}

const up = async (n: LabNode): Promise<boolean> =>
  (await encryption(n)).peers[0]?.sas?.some((s) => s.state === "INSTALLED") === true;

/** The public key (base64 SPKI) of the node's key file. */
function fileKey(n: LabNode): string {
  const pem = readFileSync(join(n.stateDir, "ipsec", "node.key"), "utf8");
  return createPublicKey(createPrivateKey(pem)).export({ format: "der", type: "spki" }).toString("base64");
}

describe("IPsec node-key rotation between lab nodes (root)", { skip }, () => {
  test("both nodes rotate their keys under a TCP stream: peers pin the next key, IKE SAs made again under it, the old key gone; no reset, nothing lost, never plaintext on the underlay", async () => {
    const prefix = "m3e" + randomBytes(2).toString("hex") + "r";
    const mark = (tag: string): string => `MBRMARK-${tag}-${randomBytes(6).toString("hex")}`;
    let lab: LabCluster | undefined;
    let cap: Capture | undefined;
    const stops: (() => void)[] = [];
    try {
      lab = await startLabCluster({
        prefix,
        nodes: 2,
        leaseTtl: 30,
        encryption: "ipsec",
        encryptionStrict: true,
      });
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      cap = await Capture.start(`${prefix}-ul`, join(lab.dir, "underlay.pcap"));
      const client = await createEndpoint(n1, "client", { app: "client" });
      const server = await createEndpoint(n2, "server", { app: "server" });
      await waitRemote(n1, [server.ipv4]);
      await waitRemote(n2, [client.ipv4]);
      await until("an installed CHILD_SA on n1", () => up(n1));
      const vici1 = new ViciClient(join(charonRunDir(n1.netns, "n1", n1.stateDir), "charon.vici"));
      stops.push(() => vici1.close());
      const ikeIds = async (): Promise<string[]> =>
        parseListSas((await vici1.stream("list-sas", {}, "list-sa")).events)
          .filter((s) => s.conn === connName("n2") && s.state === "ESTABLISHED")
          .flatMap((s) => (s.uniqueId !== undefined ? [s.uniqueId] : []));

      const tcp = await TcpSink.start(server.netns, server.ipv4, 7200);
      stops.push(() => tcp.stop());
      const streamMark = mark("tcp");
      const before = { c: await tcpResetCounters(client.netns), s: await tcpResetCounters(server.netns) };
      const stream = new TcpStream(client.netns, server.ipv4, 7200, streamMark, 20);
      assert.ok(await tcp.waitFor(`${streamMark}-5;`), "the stream flows");

      // 1. n1 rotates; n2 pins n1's next key meanwhile.
      const old1 = (await encryption(n1)).publicKey;
      assert.equal(fileKey(n1), old1);
      const ids0 = await ikeIds();
      assert.equal(ids0.length, 1, `one IKE SA to n2 before: ${ids0.join()}`);
      let rotating = true;
      let sawNext: string | undefined;
      const watch = (async (): Promise<void> => {
        for (; rotating && sawNext === undefined; await sleep(100)) {
          const p = (await encryption(n2)).peers[0];
          if (p?.nextPublicKey !== undefined && p.publicKey === old1) sawNext = p.nextPublicKey;
        }
      })();
      const r1 = (await n1.client.request("POST", "/v1/encryption/rotate-key")) as {
        previousPublicKey: string;
        publicKey: string;
      };
      rotating = false;
      await watch;
      assert.equal(r1.previousPublicKey, old1);
      assert.notEqual(r1.publicKey, old1);
      assert.equal(sawNext, r1.publicKey, "n2 pinned n1's next key beside the current one before the switch");
      // A new IKE SA under the new key; the old one closed; charon holds the new key only.
      await until("n1's old IKE SA closed", async () => {
        const ids = await ikeIds();
        return ids.length === 1 && !ids.includes(ids0[0] as string);
      });
      const keys = ((await vici1.request("get-keys")) as { keys?: string[] }).keys ?? [];
      const holds = (k: string): boolean => viciKeyIds(k).some((id) => keys.includes(id));
      assert.ok(holds(r1.publicKey), `charon holds the new key: ${JSON.stringify(keys)}`);
      assert.ok(!holds(old1), "charon no longer holds the old key");
      assert.equal(fileKey(n1), r1.publicKey, "node.key is the new key");
      assert.equal(statSync(join(n1.stateDir, "ipsec", "node.key")).mode & 0o777, 0o600);
      const s1 = await encryption(n1);
      assert.equal(s1.publicKey, r1.publicKey);
      assert.equal(s1.rotation?.rotations, 1);
      assert.equal(s1.rotation?.nextPublicKey, undefined);

      // 2. n2 rotates too.
      const old2 = (await encryption(n2)).publicKey;
      const r2 = (await n2.client.request("POST", "/v1/encryption/rotate-key")) as { publicKey: string };
      assert.notEqual(r2.publicKey, old2);
      await until("each node to pin only the other's new key", async () => {
        const [a, b] = [(await encryption(n1)).peers[0], (await encryption(n2)).peers[0]];
        return (
          a?.publicKey === r2.publicKey &&
          a.nextPublicKey === undefined &&
          b?.publicKey === r1.publicKey &&
          b.nextPublicKey === undefined
        );
      });
      await until("n1's SA to n2 up", () => up(n1));

      // 3. The stream went on throughout: no reset, every write, in order.
      await sleep(1000);
      const end = await stream.stop();
      await sleep(500);
      const lines = tcp
        .received()
        .split(";")
        .filter((x) => x.startsWith(streamMark));
      assert.equal(end.code, 0, `the TCP connection ended cleanly (no reset): ${end.stderr}`);
      assert.equal(lines.length, end.sent, `every write arrived: ${lines.length} of ${end.sent}`);
      assert.equal(lines.at(-1), `${streamMark}-${end.sent - 1}`, "in order, to the last");
      const after = { c: await tcpResetCounters(client.netns), s: await tcpResetCounters(server.netns) };
      assert.deepEqual(after, before, "no TCP reset or abort in either pod");
      console.log(
        `# two IPsec key rotations under TCP: longest pause at the receiver ${tcp.maxGap(0, Date.now())} ms`,
      );

      // 4. The capture: the control (node to node, not IPsec's traffic) is there, no marker is.
      const sink = await UdpSink.start(n2.netns, 7300);
      stops.push(() => sink.stop());
      const control = mark("control");
      for (let i = 0; i < 3 && !sink.received().includes(control); i++) {
        await sendUdp(n1.netns, n2.ip, 7300, control);
        await sink.waitFor(control, 1000);
      }
      const pcap = await cap.stop();
      cap = undefined;
      assert.ok(pcap.includes(control), "the capture sees a plaintext marker (so it could fail)");
      assert.ok(!pcap.includes(streamMark), "no stream marker crossed the underlay in plaintext");
    } finally {
      for (const s of stops) s();
      cap?.kill();
      await lab?.stop();
    }
  });
});
