/**
 * Drop logs reach an NFLOG reader in the node namespace with the prefix that
 * names endpoint (or its policy group), direction and reason, and the flow
 * observer names the endpoint of a group's log from the packet (needs root).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Reconciler } from "../../src/datapath/reconcile.js";
import { FlowEnricher } from "../../src/observe/enrich.js";
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
        { name: "c", id: 3, identity: 1002 },
      ],
      { tcp: [80, 81] },
    );
    // b and c (one identity, one policy) share a policy group.
    const ingress = {
      enforced: true,
      segments: [{ identity: 1001, proto: 6, lo: 80, hi: 80, action: "deny" as const, ruleId: 7 }],
    };
    const s = lab.state({ b: { ingress }, c: { ingress } });
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

    // b's policy is its group's (g2: b, id 2, is its smallest member).
    const deny = await waitFor("mbr:d:g2:in:r7");
    assert.ok(deny, `policy deny logged; got ${JSON.stringify(events.map((e) => e.prefix))}`);
    assert.equal(deny.packet[0]! >> 4, 4, "IPv4 packet");
    assert.deepEqual(
      [...deny.packet.subarray(12, 20)],
      [10, 200, 0, 11, 10, 200, 0, 12],
      "source a, destination b",
    );
    assert.equal(deny.packet.readUInt16BE(22), 80, "to port 80");

    const def = await waitFor("mbr:d:g2:in:def");
    assert.ok(def, "default deny logged");
    assert.equal(def.packet[0]! >> 4, 6, "the IPv6 attempt");

    const spoof = await waitFor("mbr:d:e1:out:spoof");
    assert.ok(spoof, "spoofed source logged");
    assert.deepEqual([...spoof.packet.subarray(12, 16)], [10, 200, 0, 99]);
  });

  test("a shared group's log names the endpoint the packet was for: b's and c's denials are told apart", async () => {
    const a = lab.ep("a");
    const b = lab.ep("b");
    const c = lab.ep("c");
    const from = events.length;
    assert.equal(await a.tcp(c.ipv4, 80), "timeout");
    assert.equal(await a.tcp(b.ipv4, 80), "timeout");
    const names = new Map(
      [a, b, c].map((e) => [e.ipv4, { id: e.id, name: e.info.name, identity: e.identity }]),
    );
    const enricher = new FlowEnricher({
      lookup: {
        endpointById: () => undefined,
        identityById: () => undefined,
        ipIdentity: () => undefined,
        ruleById: () => undefined,
        endpointByIp: (ip) => {
          const e = names.get(ip);
          return e && { ...e, namespace: "default", labels: [] };
        },
      },
    });
    let denied: string[] = [];
    for (let i = 0; i < 40 && denied.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      denied = events
        .slice(from)
        .filter((e) => e.prefix === "mbr:d:g2:in:r7")
        .map((e) => {
          const f = enricher.enrich(e);
          return `${f?.destination?.pod_name}#${f?.destination?.ID} <- ${f?.source?.pod_name}`;
        });
    }
    assert.deepEqual(
      denied,
      ["c#3 <- a", "b#2 <- a"],
      "one prefix (the group's), two endpoints (the packets')",
    );
  });
});
