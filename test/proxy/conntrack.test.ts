/**
 * ConntrackClient against the real kernel (needs root): a "client" and a
 * "node" network namespace joined by a veth pair, an nft table in the node
 * that DNATs TCP 80/8080 and UDP 53 of virtual addresses to the node's own
 * ports 15001/15053, and real connections through it. The node side (servers
 * and ConntrackClient) runs in fixtures/conntrack-node.js under
 * `ip netns exec`, the client side in fixtures/conntrack-client.js.
 */
import assert from "node:assert/strict";
import {
  execFile,
  execFileSync,
  spawn,
  spawnSync,
  type ChildProcessWithoutNullStreams,
} from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, test } from "node:test";
import { MAX_SEND_BATCH, type OriginalDst } from "../../src/proxy/conntrack/client.js";
import type { NodeReport, Seen } from "./fixtures/conntrack-node.js";
import type { Dialled, Target } from "./fixtures/conntrack-client.js";
import { rootWith } from "../support/skip.js";

function skipReason(): string | undefined {
  return rootWith("network namespaces, nftables, ctnetlink", ["ip", "nft"], "nftables iproute2");
}

const skip = skipReason();
const ID = `mbrct${randomBytes(3).toString("hex")}`;
const CLIENT = `${ID}c`;
const NODE = `${ID}n`;
const NODE_SCRIPT = fileURLToPath(new URL("./fixtures/conntrack-node.js", import.meta.url));
const CLIENT_SCRIPT = fileURLToPath(new URL("./fixtures/conntrack-client.js", import.meta.url));
const MARK = 0x1234;

const RULES = `
table inet ${ID} {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr { 10.9.9.9, 10.9.9.10 } tcp dport 8080 ct mark set ${MARK}
    ip daddr { 10.9.9.9, 10.9.9.10 } tcp dport { 80, 8080 } dnat ip to 10.77.0.1:15001
    ip daddr 10.9.9.9 udp dport 53 dnat ip to 10.77.0.1:15053
    ip6 daddr fd99::9 tcp dport 80 dnat ip6 to [fd77::1]:15001
    ip6 daddr fd99::9 udp dport 53 dnat ip6 to [fd77::1]:15053
  }
}`;

const run = (args: string[], input?: string): void => {
  execFileSync(args[0] as string, args.slice(1), { stdio: ["pipe", "ignore", "pipe"], input: input ?? "" });
};
const inNs = (ns: string, args: string[], input?: string): void =>
  run(["ip", "netns", "exec", ns, ...args], input);

function setUp(): void {
  run(["ip", "netns", "add", CLIENT]);
  run(["ip", "netns", "add", NODE]);
  // Created straight inside the namespaces: the root namespace never holds either end.
  run(["ip", "-n", CLIENT, "link", "add", `${ID}a`, "type", "veth", "peer", "name", `${ID}b`, "netns", NODE]);
  for (const [ns, dev, v4, v6] of [
    [CLIENT, `${ID}a`, "10.77.0.2/24", "fd77::2/64"],
    [NODE, `${ID}b`, "10.77.0.1/24", "fd77::1/64"],
  ] as const) {
    inNs(ns, ["ip", "link", "set", "lo", "up"]);
    inNs(ns, ["ip", "addr", "add", v4, "dev", dev]);
    inNs(ns, ["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"]);
    inNs(ns, ["ip", "link", "set", dev, "up"]);
  }
  inNs(CLIENT, ["ip", "route", "add", "default", "via", "10.77.0.1"]);
  inNs(CLIENT, ["ip", "-6", "route", "add", "default", "via", "fd77::1"]);
  inNs(NODE, ["nft", "-f", "-"], RULES);
}

function tearDown(): void {
  spawnSync("ip", ["netns", "del", CLIENT]);
  spawnSync("ip", ["netns", "del", NODE]);
}

interface NodeFixture {
  child: ChildProcessWithoutNullStreams;
  /** The first JSON line holding `key`; rejects on a "fatal" line or after 10 s. */
  line(key: string): Promise<Record<string, unknown>>;
}

/** Starts the node fixture and resolves once it listens. */
async function startNode(): Promise<NodeFixture> {
  const cfg = { tcpPort: 15001, udpPort: 15053, udp4Address: "10.77.0.1", udp6Address: "fd77::1" };
  const child = spawn("ip", ["netns", "exec", NODE, process.execPath, NODE_SCRIPT, JSON.stringify(cfg)]);
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    lines.push(JSON.parse(l) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  child.on("exit", () => {
    lines.push({ fatal: "the node fixture exited" });
    for (const w of waiters.splice(0)) w();
  });
  const line = (key: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`node fixture: no "${key}" in 10 s; stderr: ${stderr}`)),
        10_000,
      );
      const check = (): void => {
        const hit = lines.find((l) => key in l);
        const fatal = lines.find((l) => "fatal" in l);
        if (!hit && !fatal) return void waiters.push(check);
        clearTimeout(timer);
        if (hit) resolve(hit);
        else reject(new Error(`node fixture failed: ${JSON.stringify(fatal)}; stderr: ${stderr}`));
      };
      check();
    });
  await line("ready");
  return { child, line };
}

async function dial(targets: Target[]): Promise<Dialled[]> {
  const { stdout } = await promisify(execFile)("ip", [
    "netns",
    "exec",
    CLIENT,
    process.execPath,
    CLIENT_SCRIPT,
    JSON.stringify(targets),
  ]);
  const r = JSON.parse(stdout) as { results?: Dialled[]; fatal?: string };
  if (!r.results) throw new Error(`client fixture failed: ${r.fatal}`);
  return r.results;
}

/** The node's record of the connection `d` made: same peer address (IPv4 maybe mapped) and port. */
function seenFor(report: NodeReport, d: Dialled): Seen | undefined {
  const same = (a: string, b: string): boolean => a === b || a === `::ffff:${b}`;
  return report.seen.find(
    (s) => s.proto === d.proto && s.remote.port === d.local.port && same(s.remote.address, d.local.address),
  );
}

// The kernel (CONFIG_NF_CONNTRACK_MARK) always sends CTA_MARK in a GET answer, 0 when unset.
const TARGETS: { name: string; target: Target; want: { address: string; port: number; mark: number } }[] = [
  {
    name: "TCP to 10.9.9.9:80 redirected to 15001 reports 10.9.9.9:80",
    target: { proto: "tcp", address: "10.9.9.9", port: 80 },
    want: { address: "10.9.9.9", port: 80, mark: 0 },
  },
  {
    name: "TCP to 10.9.9.10:80 reports 10.9.9.10:80 (same proxy port, other original address)",
    target: { proto: "tcp", address: "10.9.9.10", port: 80 },
    want: { address: "10.9.9.10", port: 80, mark: 0 },
  },
  {
    name: "TCP to 10.9.9.9:8080 reports port 8080 and the ct mark the rule set",
    target: { proto: "tcp", address: "10.9.9.9", port: 8080 },
    want: { address: "10.9.9.9", port: 8080, mark: MARK },
  },
  {
    name: "UDP to 10.9.9.9:53 redirected to 15053 reports 10.9.9.9:53",
    target: { proto: "udp", address: "10.9.9.9", port: 53 },
    want: { address: "10.9.9.9", port: 53, mark: 0 },
  },
  {
    name: "TCP to [fd99::9]:80 reports fd99::9 port 80",
    target: { proto: "tcp", address: "fd99::9", port: 80 },
    want: { address: "fd99::9", port: 80, mark: 0 },
  },
  {
    name: "UDP to [fd99::9]:53 reports fd99::9 port 53",
    target: { proto: "udp", address: "fd99::9", port: 53 },
    want: { address: "fd99::9", port: 53, mark: 0 },
  },
];

describe("ConntrackClient against the kernel's conntrack (root)", { skip: skip ?? false }, () => {
  test("original destinations of DNATed TCP and UDP flows, IPv4 and IPv6, unknown tuples, concurrency and errors", async (t) => {
    let node: NodeFixture | undefined;
    try {
      setUp();
      node = await startNode();
      // Each target twice, all at once, so several connections share a proxy port.
      const dialled = await dial([...TARGETS, ...TARGETS].map((c) => c.target));
      node.child.stdin.write("finish\n");
      const report = (await node.line("done")).done as NodeReport;

      for (const c of TARGETS) {
        await t.test(c.name, () => {
          const mine = dialled.filter(
            (d) =>
              d.dialled.address === c.target.address &&
              d.dialled.port === c.target.port &&
              d.proto === c.target.proto,
          );
          assert.equal(mine.length, 2);
          for (const d of mine) {
            assert.equal(d.reply, "ok", "the client got the node's answer from the address it dialled");
            const s = seenFor(report, d);
            assert.ok(
              s,
              `node saw ${d.proto} from ${d.local.address}:${d.local.port}: ${JSON.stringify(report.seen)}`,
            );
            assert.equal(s.error, undefined);
            // The entry's id comes with every answer (random per entry: only its presence is known).
            const { ctId, ...got } = (s.got ?? {}) as Partial<OriginalDst>;
            if (s.got !== null) assert.ok(Number.isInteger(ctId) && ctId !== 0, `ctId ${ctId}`);
            assert.deepEqual(s.got === null ? null : got, c.want);
          }
        });
      }
      await t.test("the node saw exactly the connections the client made", () => {
        assert.equal(report.seen.length, dialled.length);
      });
      await t.test("a tuple conntrack has no entry for answers undefined", () => {
        assert.deepEqual(report.unknown, [
          { what: "tcp v4 from a port nobody used", got: null },
          { what: "tcp v6 from a port nobody used", got: null },
          { what: "udp v4 to a port nothing redirects to", got: null },
        ]);
      });
      await t.test(
        "300 concurrent lookups, beyond maxInFlight 16, each get their own connection's answer",
        () => {
          assert.equal(report.concurrent.lookups, 25 * dialled.length);
          assert.deepEqual(report.concurrent.mismatches, []);
        },
      );
      await t.test(
        "600 lookups and 600 of tuples without an entry, all at once, room for 1024: sent in sendmsg batches of at most MAX_SEND_BATCH, each answered for its own connection, the others undefined",
        () => {
          const { lookups, mismatches, stats, unknownAnswers } = report.batched;
          assert.equal(lookups, 50 * dialled.length);
          assert.deepEqual(mismatches, []);
          assert.deepEqual(unknownAnswers, ["null"]);
          // The open() probe went alone; every other batch holds many requests, none more than the bound.
          assert.equal(stats.requests, 1 + 2 * lookups);
          assert.equal(stats.largestBatch, MAX_SEND_BATCH);
          assert.ok(MAX_SEND_BATCH <= 256, "the bound stays well under the kernel's 1024 iovecs");
          // Batched while waiting for room too (a sendmsg per request would be 1201).
          assert.ok(stats.sendmsgs * 8 < stats.requests, JSON.stringify(stats));
        },
      );
      await t.test(
        "without CAP_NET_ADMIN every lookup of a batch fails with EPERM, not only the first the kernel answers",
        () => {
          const q = "CONNTRACK_FAILED: Cannot look up the original destination of tcp";
          assert.deepEqual(
            report.unprivileged,
            [1, 2, 3, 4, 5].map((p) => `${q} 10.77.0.2:${p} -> 10.77.0.1:15001: the kernel answered EPERM`),
          );
        },
      );
      await t.test("bad arguments and a closed client reject with CONNTRACK_FAILED", () => {
        const q = "Cannot look up the original destination of";
        assert.deepEqual(report.errors, [
          {
            what: "not an address",
            error: `CONNTRACK_FAILED: ${q} tcp 10.0.0.1:2 -> nope:1: the local address "nope" is not an IP address`,
          },
          {
            what: "mixed families",
            error: `CONNTRACK_FAILED: ${q} tcp [fd00::1]:2 -> 10.0.0.1:1: the local address 10.0.0.1 and the remote address fd00::1 are of different IP families`,
          },
          {
            what: "port out of range",
            error: `CONNTRACK_FAILED: ${q} udp 10.0.0.2:2 -> 10.0.0.1:70000: the local port 70000 is not 0-65535`,
          },
          {
            what: "pending when closed",
            error: `CONNTRACK_FAILED: ${q} tcp 10.0.0.2:2 -> 10.0.0.1:1: the client was closed`,
          },
          {
            what: "after close",
            error: `CONNTRACK_FAILED: ${q} tcp 10.0.0.2:2 -> 10.0.0.1:1: the client was closed`,
          },
        ]);
      });
    } finally {
      node?.child.kill();
      tearDown();
    }
  });
});
