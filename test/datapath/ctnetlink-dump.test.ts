/**
 * The conntrack dump and delete of ctnetlink/child.js against the real
 * kernel, in a scratch namespace (needs root): the kernel filters the dump by
 * ct mark, and a deleted entry is gone from the next dump.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConntrackChild } from "../../src/datapath/conntrack-flush.js";
import { runRaw } from "../../src/datapath/exec.js";
import { Probe } from "../../src/probe/probe.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

describe("ctnetlink dump and delete (ka, root)", { skip: skip ?? false }, () => {
  const ns = `${uniquePrefix("ka")}-ct`;
  let probe: Probe | undefined;
  const dump = async (): Promise<Awaited<ReturnType<ConntrackChild["dump"]>>> => {
    const c = ConntrackChild.start({ nodeNetns: ns });
    try {
      return await c.dump();
    } finally {
      c.close();
    }
  };
  const ports = (entries: { dstPort: number; proto: number }[]): number[] =>
    entries
      .filter((e) => e.proto === 6)
      .map((e) => e.dstPort)
      .sort();

  before(async () => {
    for (const argv of [
      ["ip", "netns", "add", ns],
      ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]) {
      const r = await runRaw(argv);
      assert.equal(r.status, 0, r.stderr);
    }
    // A ct expression turns conntrack on in the namespace; port 9002's connection carries a proxy bit.
    const r = await runRaw(["nft", "-f", "-"], {
      netns: ns,
      stdin: [
        "table inet t {",
        "  chain o {",
        "    type filter hook output priority 0;",
        "    tcp dport 9002 ct mark set 0x80000000",
        "  }",
        "}",
        "",
      ].join("\n"),
    });
    assert.equal(r.status, 0, r.stderr);
    probe = Probe.start(ns);
    await probe.listen("tcp", 9001);
    await probe.listen("tcp", 9002);
    assert.equal(await probe.open("a", "127.0.0.1", 9001), "ok");
    assert.equal(await probe.open("b", "127.0.0.1", 9002), "ok");
  });
  after(async () => {
    probe?.stop();
    await runRaw(["ip", "netns", "del", ns]);
  });

  test("the dump holds the unmarked connection only, and names the namespace's own addresses", async () => {
    const d = await dump();
    assert.deepEqual(ports(d.entries), [9001]);
    assert.ok(d.local.includes("127.0.0.1"), d.local.join(","));
  });

  test("with addresses, only entries from or to one of them", async () => {
    for (const [addresses, want] of [
      [["127.0.0.1"], [9001]],
      [["::ffff:127.0.0.1"], [9001]],
      [["10.9.9.9"], []],
    ] as const) {
      const c = ConntrackChild.start({ nodeNetns: ns }, addresses);
      try {
        assert.deepEqual(ports((await c.dump()).entries), want, addresses.join(","));
      } finally {
        c.close();
      }
    }
  });

  test("a deleted entry is gone from the next dump; deleting it again reports it gone, not failed", async () => {
    const c = ConntrackChild.start({ nodeNetns: ns });
    try {
      const d = await c.dump();
      const mine = d.entries.filter((e) => e.dstPort === 9001);
      assert.deepEqual(await c.delete([...mine, ...mine]), { deleted: 1, failed: [] });
    } finally {
      c.close();
    }
    assert.deepEqual(ports((await dump()).entries), []);
  });
});
