// The kernel table of authenticated pairs (datapath/auth-table.ts) for real (root, nft, iptables, a
// throwaway namespace), written both ways: through the agent's own nfnetlink socket (auth-wire.ts,
// the default) and with `nft` (the fallback):
//  - writes that arrive while one transaction runs join the next, and the kernel ends as the
//    calls' order says (an add then a remove of one pair leaves it out; a remove then an add
//    leaves it in);
//  - the socket's elements are exactly what nft reads back (IPv4, IPv6, /0 networks, identities),
//    with their timeouts; a refresh sets the new timeout; both writers leave the same kernel;
//  - a batch the kernel refuses leaves nothing half written, and the nft fallback is tried.
// Plus the encoding itself (pure): key layout and refusals naming what is wrong.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { AuthTable, type AuthPairEntry } from "../../src/datapath/auth-table.js";
import { authElement, authWriteMessages } from "../../src/datapath/auth-wire.js";
import { cleanupPrefix, createNetns } from "../../src/datapath/netns.js";
import { runRaw } from "../../src/datapath/exec.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

const skip =
  rootSkipReason() ??
  (spawnSync("sh", ["-c", "command -v iptables"]).status !== 0 ? "needs iptables" : undefined);

const pair = (src: number, dst: number, srcNets = ["10.1.0.0/24"], dstNets = ["10.2.0.0/24"]) => ({ src, dst, srcNets, dstNets }); // prettier-ignore
const rows = (es: readonly AuthPairEntry[]): string[] => es.map((e) => `${e.src}>${e.dst}@${e.srcNet}>${e.dstNet}`).sort(); // prettier-ignore

describe("auth pair elements as netlink bytes (pure)", () => {
  test("key and key end: identities big-endian, then the first and last address of each network", () => {
    const e = authElement("pairs4", { src: 300, dst: 301, srcNet: "10.1.0.0/24", dstNet: "10.2.0.0/16" });
    assert.equal(e.key.toString("hex"), "0000012c0000012d0a0100000a020000");
    assert.equal(e.keyEnd.toString("hex"), "0000012c0000012d0a0100ff0a02ffff");
    const six = authElement("pairs6", { src: 256, dst: 257, srcNet: "::/0", dstNet: "fd00::/64" });
    assert.equal(six.key.length, 40);
    assert.equal(six.keyEnd.subarray(8, 24).toString("hex"), "ff".repeat(16));
    assert.equal(six.keyEnd.subarray(24).toString("hex"), "fd00000000000000ffffffffffffffff");
  });

  test("refusals name what is wrong: identities, networks of the other family, lifetimes", () => {
    const bad = [
      [() => authElement("pairs4", { src: 0, dst: 301, srcNet: "10.1.0.0/24", dstNet: "10.2.0.0/24" }), /source 0 is not an identity/], // prettier-ignore
      [() => authElement("pairs4", { src: 300, dst: 2 ** 32, srcNet: "10.1.0.0/24", dstNet: "10.2.0.0/24" }), /destination 4294967296/], // prettier-ignore
      [() => authElement("pairs4", { src: 300, dst: 301, srcNet: "fd00::/64", dstNet: "10.2.0.0/24" }), /source network "fd00::\/64" is not an IPv4 prefix/], // prettier-ignore
      [() => authElement("pairs6", { src: 300, dst: 301, srcNet: "::/0", dstNet: "10.2.0.0/24\n" }), /destination network/], // prettier-ignore
      [() => authWriteMessages("membrane_auth", [{ kind: "add", seconds: 0.5, elements: [{ set: "pairs4", key: { src: 300, dst: 301, srcNet: "10.1.0.0/24", dstNet: "10.2.0.0/24" } }] }]), /lifetime 0.5/], // prettier-ignore
    ] as const;
    for (const [f, why] of bad) {
      assert.throws(
        f,
        (e: Error & { code?: string }) => e.code === "AUTH_SETUP_FAILED" && why.test(e.message),
      );
    }
  });
});

describe("auth table writes (root)", { skip }, () => {
  test("bursts land in call order (through the socket; nft writes the same: the next test)", async () => {
    const prefix = uniquePrefix("m4a");
    const ns = `${prefix}-t`;
    try {
      await createNetns(ns);
      for (const writer of ["socket"] as const) {
        const t = new AuthTable(`m4a${writer}`, ns);
        t.writer = writer;
        await t.install();
        // 30 pairs at once, then, in one burst: 300->400 removed after its add; 301->400 added after its remove.
        await Promise.all(Array.from({ length: 30 }, (_, i) => t.add([pair(300 + i, 400)], 60)));
        assert.ok(t.stats.transactions <= 2, `30 writes at once took ${t.stats.transactions} transactions`);
        const burst = [
          t.add([pair(300, 400)], 60),
          t.remove([pair(300, 400)]),
          t.remove([pair(301, 400)]),
          t.add([pair(301, 400)], 60),
          t.add([pair(500, 600)], 60),
        ];
        await Promise.all(burst);
        const have = new Set((await t.list()).map((e) => `${e.src}>${e.dst}`));
        assert.equal(have.size, 30, [...have].join(" "));
        assert.ok(!have.has("300>400"), "added then removed: out");
        assert.ok(have.has("301>400"), "removed then added: in");
        assert.ok(have.has("500>600") && have.has("329>400"));
        assert.equal(t.stats[writer], t.stats.transactions, JSON.stringify(t.stats));
        assert.equal(t.stats.fallbacks, 0, t.stats.lastFallback);
        t.close();
      }
    } finally {
      await cleanupPrefix(prefix);
    }
  });

  test("the socket's elements are what nft reads back, with their timeouts; a refused batch writes nothing", async () => {
    const prefix = uniquePrefix("m4a");
    const ns = `${prefix}-e`;
    try {
      await createNetns(ns);
      const viaSocket = new AuthTable("m4aelem", ns);
      const viaNft = new AuthTable("m4aelemnft", ns);
      viaNft.writer = "nft";
      assert.equal(viaSocket.writer, "socket", "the addon is built: writes go through the socket");
      const ps = [
        pair(300, 301),
        pair(302, 303, ["0.0.0.0/0", "::/0"], ["0.0.0.0/0", "::/0"]),
        pair(304, 305, ["fd00:1::/64"], ["fd00:2::/64", "10.9.0.0/16"]),
      ];
      for (const t of [viaSocket, viaNft]) {
        await t.install();
        await t.add(ps, 30);
      }
      const got = await viaSocket.list();
      assert.deepEqual(rows(got), rows(await viaNft.list()), "the same kernel elements either way");
      assert.deepEqual(rows(got), [
        "300>301@10.1.0.0/24>10.2.0.0/24",
        "302>303@0.0.0.0/0>0.0.0.0/0",
        "302>303@::/0>::/0",
        "304>305@fd00:1::/64>fd00:2::/64",
      ]);
      for (const e of got) assert.ok(e.expiresSeconds > 0 && e.expiresSeconds <= 30, JSON.stringify(e));
      // A refresh sets the new timeout (an existing element keeps its old one on a plain add).
      await viaSocket.add([pair(300, 301)], 3600);
      const refreshed = (await viaSocket.list()).find((e) => e.src === 300);
      assert.ok(refreshed && refreshed.expiresSeconds > 1000, JSON.stringify(refreshed));
      await viaSocket.remove([pair(300, 301), pair(999, 998)]); // a missing pair is no error
      assert.ok(!(await viaSocket.list()).some((e) => e.src === 300));
      assert.equal(viaSocket.stats.fallbacks, 0, viaSocket.stats.lastFallback);
      // The IPv6 set gone: a batch with an IPv4 and an IPv6 element is refused whole (the IPv4 one
      // is not written either), then nft is tried (and refused too): the write fails, nothing lands.
      const t = "inet m4aelem_auth";
      const gone = await runRaw(["nft", `flush chain ${t} check_fwd; flush chain ${t} check_in; delete set ${t} pairs6`], { netns: ns }); // prettier-ignore
      assert.equal(gone.status, 0, gone.stderr);
      await assert.rejects(viaSocket.add([pair(310, 311, ["10.1.0.0/24", "fd00:1::/64"], ["10.2.0.0/24", "fd00:2::/64"])], 30)); // prettier-ignore
      assert.equal(viaSocket.stats.fallbacks, 1);
      assert.match(viaSocket.stats.lastFallback, /ENOENT/);
      assert.ok(!(await viaSocket.list()).some((e) => e.src === 310), "nothing half written");
      viaSocket.close();
    } finally {
      await cleanupPrefix(prefix);
    }
  });
});
