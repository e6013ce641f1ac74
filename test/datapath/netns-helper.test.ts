/**
 * The long-lived helper shell that makes endpoint namespaces (needs root):
 * hostile names and lines are refused before they reach the shell, a refused
 * step names the namespace and the line and leaves nothing behind, and one
 * shell serves many requests.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { run } from "../../src/datapath/exec.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { addNetns, batchIn } from "../../src/datapath/netns-helper.js";
import { rootSkipReason } from "./harness.js";
import { spawned } from "./spawn-spy.js";

const skip = rootSkipReason();

async function withPrefix(f: (prefix: string) => Promise<void>): Promise<void> {
  const prefix = `my3${randomBytes(2).toString("hex")}h`;
  try {
    await f(prefix);
  } finally {
    await cleanupPrefix(prefix);
  }
}

describe("namespace helper shell (root)", { skip: skip ?? false }, () => {
  test("many namespaces through one shell: sysctls set inside, no process spawned from Node", async () => {
    await withPrefix(async (prefix) => {
      await addNetns(`${prefix}-warm`, "warm-up"); // starts the shell if no other test did
      const names = [1, 2, 3].map((i) => `${prefix}-n${i}`);
      const argv = await spawned(async () => {
        for (const n of names) await addNetns(n, "test");
        for (const n of names) await batchIn(n, ["link set lo up"], "bring lo up");
      });
      assert.deepEqual(argv, []);
      for (const n of names) {
        const v = await run([
          "nsenter",
          `--net=/run/netns/${n}`,
          "cat",
          "/proc/sys/net/ipv6/conf/default/accept_dad",
        ]);
        assert.equal(v.trim(), "0", `${n}: accept_dad`);
        assert.match(await run(["ip", "-n", n, "link", "show", "lo"]), /UP/);
      }
    });
  });

  test("names and lines that could add script are refused, naming what is wrong; nothing is made", async () => {
    await withPrefix(async (prefix) => {
      for (const bad of [
        `${prefix}-a b`,
        `${prefix}-a'`,
        `${prefix}-$(id)`,
        `${prefix}-a\nb`,
        `-${prefix}`,
        "..",
      ]) {
        await assert.rejects(addNetns(bad, "endpoint x"), (e: Error) => {
          assert.match(e.message, /Cannot create netns for endpoint x: .* is not 1-200 of/);
          return true;
        });
      }
      await addNetns(`${prefix}-ok`, "endpoint x");
      for (const line of ["link set lo up; reboot", "addr add $(id) dev lo", "x\nMEMBRANE_EOF", "a`b`"]) {
        await assert.rejects(
          batchIn(`${prefix}-ok`, [line], "configure eth0"),
          /line 1 .* holds a character/,
        );
      }
      assert.deepEqual(
        (await listNetns()).filter((n) => n.startsWith(prefix)),
        [`${prefix}-ok`],
      );
    });
  });

  test("a refused step names the namespace and the line; an existing name is refused and kept as it was", async () => {
    await withPrefix(async (prefix) => {
      const ns = `${prefix}-e`;
      await addNetns(ns, "endpoint e");
      await assert.rejects(
        addNetns(ns, "endpoint e"),
        new RegExp(`Cannot create netns ${ns} for endpoint e`),
      );
      assert.ok((await listNetns()).includes(ns), "the existing namespace stays");
      await assert.rejects(
        batchIn(ns, ["link set lo up", "link set nosuchdev up"], "configure eth0 of endpoint e"),
        (e: Error) => {
          assert.match(e.message, new RegExp(`configure eth0 of endpoint e \\(netns ${ns}\\)`));
          assert.match(e.message, /Command failed -:2/);
          return true;
        },
      );
    });
  });
});
