/**
 * The two set-element writers (native/membrane-nfnl.c and nfnl/child.ts) speak
 * the same frames and give the same answers: the same sequence of frames, sent
 * to each in its own scratch namespace, is answered alike (ok, or the same
 * errno, or a refusal of bytes that are not a writable batch), and leaves the
 * same map behind. The native writer keeps CAP_NET_ADMIN only, with
 * no_new_privs.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { setElemBatch, type SetElemOps } from "../../src/abi/nft-setelem-wire.js";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply, runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { writerCommand } from "../../src/datapath/nfnl/setelem.js";
import { inNetns } from "../../src/datapath/rtnl.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

const key = (ip: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip);
  return b;
};
const mark = (m: number): SetElemOps => ({
  set: "h4",
  add: [{ key: key(0x0a000000 + m), value: m }],
  del: [],
});

/** The frames of the sequence: each a batch (or bytes that are not one). */
function frames(): Buffer[] {
  const good = setElemBatch("w", [mark(1), mark(2)], 0).bytes;
  const edgesOnly = setElemBatch("w", [], 0).bytes;
  const table = Buffer.from(good);
  table.writeUInt16LE(10 << 8, 20 + 4); // NEWTABLE in place of the first NEWSETELEM: not writable
  const exists = setElemBatch(
    "w",
    [mark(3), { set: "h4", add: [{ key: key(0x0a000001), value: 9 }], del: [] }],
    0,
  );
  const missing = setElemBatch("w", [{ set: "h4", add: [], del: [{ key: key(0x0a0000ff) }] }], 0).bytes;
  const later = setElemBatch("w", [mark(4)], 0).bytes;
  return [good, edgesOnly, table, exists.bytes, missing, later];
}

interface Answer {
  id: number;
  ok: boolean;
  errno?: number;
}

async function run(netns: string, kind: "native" | "node"): Promise<{ answers: Answer[]; status: string }> {
  const saved = process.env["MEMBRANE_NFNL_WRITER"];
  if (kind === "node") process.env["MEMBRANE_NFNL_WRITER"] = "node";
  else delete process.env["MEMBRANE_NFNL_WRITER"];
  const cmd = writerCommand();
  if (saved === undefined) delete process.env["MEMBRANE_NFNL_WRITER"];
  else process.env["MEMBRANE_NFNL_WRITER"] = saved;
  if (kind === "native") assert.match(cmd[0] ?? "", /membrane-nfnl$/, "the build made the native writer");
  const argv = [...inNetns(netns), ...cmd];
  const c = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
  try {
    const answers: Answer[] = [];
    const lines = createInterface({ input: c.stdout });
    const fs = frames();
    let status = "";
    const done = new Promise<void>((resolve) =>
      lines.on("line", (l) => {
        const a = JSON.parse(l) as Answer;
        answers.push({ id: a.id, ok: a.ok, ...(a.errno !== undefined ? { errno: a.errno } : {}) });
        if (answers.length === fs.length) resolve();
      }),
    );
    fs.forEach((b, i) => {
      const head = Buffer.alloc(8);
      head.writeUInt32LE(4 + b.length, 0);
      head.writeUInt32LE(i + 1, 4);
      c.stdin.write(Buffer.concat([head, b]));
    });
    await done;
    // The writer that runs now is the nsenter's exec: its pid is the child's.
    if (kind === "native") status = readFileSync(`/proc/${c.pid}/status`, "utf8");
    return { answers, status };
  } finally {
    c.stdin.end();
    c.kill("SIGKILL");
  }
}

describe("nfnl writers: native and Node alike (root)", { skip: skip ?? false }, () => {
  const prefix = uniquePrefix("nw");
  const nodes: NamedNodeNetns[] = [];
  before(async () => {
    for (const n of ["a", "b"]) {
      const node = await createNode({ netns: `${prefix}-${n}` });
      await nftApply("table inet w {\n  map h4 { type ipv4_addr : mark; }\n}\n", { netns: node.netns });
      nodes.push(node);
    }
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("the same frames get the same answers and leave the same map; the native writer holds CAP_NET_ADMIN only", async () => {
    const native = await run(nodes[0]!.netns, "native");
    const node = await run(nodes[1]!.netns, "node");
    const expected: Answer[] = [
      { id: 1, ok: true },
      { id: 2, ok: true },
      { id: 3, ok: false },
      { id: 4, ok: false, errno: 17 },
      { id: 5, ok: false, errno: 2 },
      { id: 6, ok: true },
    ];
    assert.deepEqual(native.answers, expected);
    assert.deepEqual(node.answers, expected);
    const list = async (netns: string): Promise<string> =>
      (await runRaw(["nft", "list", "map", "inet", "w", "h4"], { netns })).stdout.replace(/\s+/g, " ");
    const a = await list(nodes[0]!.netns);
    assert.equal(a, await list(nodes[1]!.netns));
    assert.match(a, /10\.0\.0\.1 : 0x00000001, 10\.0\.0\.2 : 0x00000002, 10\.0\.0\.4 : 0x00000004/);
    assert.doesNotMatch(a, /10\.0\.0\.3/, "a refused batch applies none of its elements");
    assert.match(native.status, /^CapEff:\s+0000000000001000$/m);
    assert.match(native.status, /^CapPrm:\s+0000000000001000$/m);
    assert.match(native.status, /^NoNewPrivs:\s+1$/m);
  });
});
