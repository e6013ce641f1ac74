/**
 * The native namespace helper takes a bulk of ops (a cold start's every host end) in requests
 * that fit its line bounds (4 KiB, 256 words). Before, such a request was one line: the helper
 * refused it (a line over 4 KiB ended it; 256 words or more got an answer without the request's
 * id), and the cold start fell back to one slow reconcile per endpoint. Needs root.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import type { LinkOp } from "../../src/datapath/endpoint-state.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import {
  closeNativeNetns,
  nativeApply,
  nativeNetns,
  REQUEST_MAX_BYTES,
  REQUEST_MAX_WORDS,
  requestLines,
} from "../../src/datapath/netns-native.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason() ?? (nativeNetns() ? undefined : "the native helper is not built (no gcc)");
const N = 120;

const opsFor = (i: number): LinkOp[] => [
  { op: "up", ifname: `scb${i}` },
  { op: "addr", ifname: `scb${i}`, cidr: "fe80::1/64", nodad: true },
  { op: "route", dst: `10.211.${i >> 8}.${i & 255}`, dev: `scb${i}` },
];

describe("the native helper takes bulk requests (root)", { skip: skip ?? false }, () => {
  test(`${N} endpoints' host ends (${N * 3} ops) in one call: every link up, every address and route in place`, async () => {
    const prefix = `sc${uniquePrefix("nb")}`;
    const ns = `${prefix}-node`;
    try {
      await runRaw(["ip", "netns", "add", ns]);
      const links = Array.from({ length: N }, (_, i) => `link add scb${i} type veth peer name scp${i}\n`);
      const made = await runRaw(["ip", "-n", ns, "-batch", "-"], { stdin: links.join("") });
      assert.equal(made.status, 0, made.stderr);
      const ops = Array.from({ length: N }, (_, i) => opsFor(i)).flat();
      await nativeApply(ns, ops, `configure the host ends of ${N} endpoints`);
      const links2 = JSON.parse((await runRaw(["ip", "-n", ns, "-j", "link", "show"])).stdout) as {
        ifname?: string;
        flags?: string[];
      }[];
      const up = links2.filter(
        (l) => l.ifname?.startsWith("scb") === true && l.flags?.includes("UP") === true,
      );
      assert.equal(up.length, N, "every host end is up");
      const routes = JSON.parse((await runRaw(["ip", "-n", ns, "-j", "route", "show"])).stdout) as {
        dst?: string;
      }[];
      assert.equal(
        routes.filter((r) => r.dst?.startsWith("10.211.") === true).length,
        N,
        "every route is in place",
      );
      const a6 = (await runRaw(["ip", "-n", ns, "-6", "addr", "show", "dev", `scb${N - 1}`])).stdout;
      assert.match(a6, /fe80::1\/64/);
    } finally {
      closeNativeNetns();
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("requests are cut within the helper's bounds, in order, each entering the namespace", () => {
    const ops = Array.from({ length: 400 }, (_, i) => opsFor(i)).flat();
    const lines = requestLines("some-node", ops);
    assert.ok(lines.length > 1);
    for (const l of lines) {
      assert.deepEqual(l.slice(0, 2), ["ns", "some-node"]);
      assert.ok(l.length + 1 <= REQUEST_MAX_WORDS + 1, `words: ${l.length}`);
      assert.ok(`4294967295 ${l.join(" ")}\n`.length <= REQUEST_MAX_BYTES + 100, "bytes");
    }
    // Nothing lost, nothing reordered.
    assert.deepEqual(
      lines.flatMap((l) => l.slice(2)),
      requestLines("some-node", ops).flatMap((l) => l.slice(2)),
    );
    const words = lines.flatMap((l) => l.slice(2));
    assert.equal(words.filter((w) => w === "up").length, 400);
    assert.equal(words[1], "scb0");
    assert.equal(words.at(-4), "10.211.1.143");
  });
});
