/**
 * Drop logs reach an NFLOG reader in the node namespace with the prefix that
 * names endpoint, direction and reason (needs root).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Reconciler } from "../../src/datapath/reconcile.js";
import { readNflogInNetns, type NflogEvent } from "../../src/observe/nflog.js";
import { Lab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();
const GROUP = 9;

describe("NFLOG drop events (root)", { skip: skip ?? false }, () => {
  let lab: Lab;
  let reader: { stop: () => void } | undefined;
  const events: NflogEvent[] = [];
  before(async () => {
    lab = await Lab.create(
      "nf",
      [
        { name: "a", id: 1, identity: 1001 },
        { name: "b", id: 2, identity: 1002 },
      ],
      { tcp: [80, 81] },
    );
    const s = lab.state({
      b: {
        ingress: {
          enforced: true,
          segments: [{ identity: 1001, proto: 6, lo: 80, hi: 80, action: "deny", ruleId: 7 }],
        },
      },
    });
    await new Reconciler({ netns: lab.node.netns, logGroup: GROUP }).apply(s);
    reader = await readNflogInNetns(lab.node.netns, GROUP, (e) => events.push(e));
  });
  after(async () => {
    reader?.stop();
    await lab?.destroy();
  });

  const waitFor = async (prefix: string): Promise<NflogEvent | undefined> => {
    for (let i = 0; i < 40 && !events.some((e) => e.prefix === prefix); i++)
      await new Promise((r) => setTimeout(r, 50));
    return events.find((e) => e.prefix === prefix);
  };

  test("a policy deny, a default deny and a spoofed source each log their reason with the packet", async () => {
    const a = lab.ep("a");
    const b = lab.ep("b");
    assert.equal(await a.tcp(b.ipv4, 80), "timeout");
    assert.equal(await a.tcp(b.ipv6, 81), "timeout");
    await a.exec(["ip", "addr", "add", "10.200.0.99/32", "dev", "eth0"]);
    assert.equal(await a.udp(b.ipv4, 53, "10.200.0.99"), "timeout");

    const deny = await waitFor("mbr:d:e2:in:r7");
    assert.ok(deny, `policy deny logged; got ${JSON.stringify(events.map((e) => e.prefix))}`);
    assert.equal(deny.packet[0]! >> 4, 4, "IPv4 packet");
    assert.deepEqual(
      [...deny.packet.subarray(12, 20)],
      [10, 200, 0, 11, 10, 200, 0, 12],
      "source a, destination b",
    );
    assert.equal(deny.packet.readUInt16BE(22), 80, "to port 80");

    const def = await waitFor("mbr:d:e2:in:def");
    assert.ok(def, "default deny logged");
    assert.equal(def.packet[0]! >> 4, 6, "the IPv6 attempt");

    const spoof = await waitFor("mbr:d:e1:out:spoof");
    assert.ok(spoof, "spoofed source logged");
    assert.deepEqual([...spoof.packet.subarray(12, 16)], [10, 200, 0, 99]);
  });
});
