/**
 * The nfnl writer's pipe (needs root: a scratch node namespace): one frame is one
 * write to the pipe. Each write wakes the writer process, which on a busy machine
 * takes the CPU from the agent's event loop at once; a frame written as its header
 * and then its batch woke it twice.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply, runRaw } from "../../src/datapath/exec.js";
import type { NftMap } from "../../src/datapath/model.js";
import { encodeElement } from "../../src/datapath/nfnl/encode.js";
import { SetElemWriter } from "../../src/datapath/nfnl/setelem.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

type Handle = Record<string, unknown>;
const WRITES = ["writeBuffer", "writev", "writeUtf8String", "writeLatin1String", "writeAsciiString"];

/** Counts the writer pipe's system-call-level writes (its stream handle's write methods). */
function countWrites(w: SetElemWriter): { n: number } {
  const child = (w as unknown as { child?: ChildProcess }).child;
  const handle = (child?.stdin as unknown as { _handle?: Handle } | null)?._handle;
  assert.ok(handle, "the writer process runs and its stdin is a pipe");
  const count = { n: 0 };
  for (const name of WRITES) {
    const f = handle[name];
    if (typeof f !== "function") continue;
    handle[name] = function (this: unknown, ...args: unknown[]): unknown {
      count.n++;
      return (f as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
  return count;
}

describe("nfnl writer pipe (root)", { skip: skip ?? false }, () => {
  const prefix = uniquePrefix("np");
  let node: NamedNodeNetns;
  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("a batch goes to the writer process in one write to its pipe, and the kernel holds it", async () => {
    await nftApply(`table inet npt {\n  map h4 { type ipv4_addr : mark; }\n}\n`, { netns: node.netns });
    const h4: NftMap = { name: "h4", fields: ["ipv4"], valueType: "mark", interval: false, elements: [] };
    const el = (ip: number, mark: string) => {
      const e = encodeElement(h4, { key: [{ lo: BigInt(ip), hi: BigInt(ip) }], value: mark }, false);
      assert.ok(e);
      return e;
    };
    const w = new SetElemWriter(node.netns);
    try {
      w.warm();
      const count = countWrites(w);
      await w.apply("npt", [{ set: "h4", add: [el(0x0a000001, "42")], del: [] }]);
      assert.equal(count.n, 1, "one write for the frame (header and batch together)");
      await w.apply("npt", [{ set: "h4", add: [el(0x0a000002, "43")], del: [] }]);
      assert.equal(count.n, 2);
      const listed = (await runRaw(["nft", "list", "map", "inet", "npt", "h4"], { netns: node.netns }))
        .stdout;
      assert.match(listed, /10\.0\.0\.1 : 0x0000002a/);
      assert.match(listed, /10\.0\.0\.2 : 0x0000002b/);
    } finally {
      w.stop();
    }
  });
});
