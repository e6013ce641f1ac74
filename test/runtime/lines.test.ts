import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Assembler, type ProcessRecord } from "../../src/runtime/source/assemble.js";
import { BpftraceSource, type DropReason } from "../../src/runtime/source/bpftrace.js";
import { MAX_LINE, parseLine, unescapeBuf } from "../../src/runtime/source/lines.js";
import { rootSkipReason } from "../datapath/harness.js";

const pf = (data: string): string => JSON.stringify({ type: "printf", data: data + "\n" });
const EXEC = [
  pf("E 100 1 1 1000 4294967295 4026531833 1 5000 6000 16"),
  pf("A 100 1 /bin/echo\\x00a b\\x00c\\x00"),
  pf("C 100 1 5 we\\x0aird"),
  pf("C 100 1 3 tmp"),
  pf("B 100 1 2 1 /bin/echo"),
];

describe("bpftrace lines (hostile input)", () => {
  const cases: { name: string; line: string; want: string }[] = [
    { name: "a fork", line: pf("F 5 4 99"), want: "fork" },
    { name: "an exit", line: pf("X 5 2304 100"), want: "exit" },
    { name: "lost events", line: JSON.stringify({ type: "lost_events", data: { events: 7 } }), want: "lost" },
    {
      name: "attach notice",
      line: JSON.stringify({ type: "attached_probes", data: { probes: 5 } }),
      want: "attached",
    },
    { name: "truncated JSON", line: pf("E 100 1 1 1000").slice(0, 20), want: "malformed" },
    { name: "not JSON at all", line: "Lost 12 events", want: "malformed" },
    { name: "a huge line", line: pf("A 1 1 " + "x".repeat(MAX_LINE)), want: "malformed" },
    { name: "an exec header missing fields", line: pf("E 100 1 1 1000 5"), want: "malformed" },
    { name: "a pid beyond 32 bits", line: pf("X 99999999999 0 1"), want: "malformed" },
    { name: "a negative pid", line: pf("X -1 0 1"), want: "malformed" },
    { name: "an unknown tag", line: pf("Z 1 2"), want: "malformed" },
    {
      name: "printf data not a string",
      line: JSON.stringify({ type: "printf", data: 5 }),
      want: "malformed",
    },
    { name: "JSON null", line: "null", want: "malformed" },
    {
      name: "a kind bpftrace may add later",
      line: JSON.stringify({ type: "map", data: {} }),
      want: "ignored",
    },
  ];
  for (const c of cases) test(`${c.name} -> ${c.want}`, () => assert.equal(parseLine(c.line).kind, c.want));

  test("\\xNN escapes become bytes (newlines in names stay inside their field)", () => {
    assert.deepEqual(unescapeBuf("a\\x00b\\x0a"), Buffer.from("a\0b\n"));
  });

  test("an exec's lines join into one record: argv, cwd (innermost first), binary", () => {
    const out: ProcessRecord[] = [];
    const a = new Assembler((r) => out.push(r));
    for (const l of EXEC) {
      const p = parseLine(l);
      assert.ok(p.kind !== "malformed" && p.kind !== "lost" && p.kind !== "attached" && p.kind !== "ignored");
      a.push(p);
    }
    assert.equal(out.length, 1);
    const r = out[0]!;
    assert.ok(r.kind === "exec");
    assert.deepEqual(r.argv, ["/bin/echo", "a b", "c"]);
    assert.equal(r.cwd, "/tmp/we\nird");
    assert.equal(r.cwdComplete, true);
    assert.equal(r.binary, "/bin/echo");
    assert.equal(r.argsTruncated, false);
  });

  test("lines of an exec whose header was lost are counted as orphans, never thrown", () => {
    const a = new Assembler(() => assert.fail("nothing is complete"));
    for (const l of EXEC.slice(1)) {
      const p = parseLine(l);
      if (p.kind === "args" || p.kind === "cwd" || p.kind === "binary") a.push(p);
    }
    assert.equal(a.orphans, 1); // the argument chunk; the cwd half waits (bounded) for a header
  });

  test("the cwd program's lines may come before the header's: still one record", () => {
    const out: ProcessRecord[] = [];
    const a = new Assembler((r) => out.push(r));
    for (const l of [...EXEC.slice(2), ...EXEC.slice(0, 2)]) {
      const p = parseLine(l);
      if (p.kind === "exec" || p.kind === "args" || p.kind === "cwd" || p.kind === "binary") a.push(p);
    }
    assert.equal(out.length, 1);
    assert.ok(out[0]?.kind === "exec" && out[0].cwd === "/tmp/we\nird" && out[0].argv.length === 3);
  });

  test(
    "a bpftrace that prints garbage: every bad line counted and dropped, good ones still read (needs root)",
    { skip: rootSkipReason() },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "my7-fakebpf-"));
      try {
        const fake = join(dir, "bpftrace");
        const huge = "A 100 1 " + "y".repeat(3 * MAX_LINE);
        const lines = [
          JSON.stringify({ type: "attached_probes", data: { probes: 5 } }),
          "garbage",
          pf(huge),
          pf("E 100 1"),
          '{"type": "printf", "data": "E 1',
          JSON.stringify({ type: "lost_events", data: { events: 3 } }),
          ...EXEC,
          pf("X 100 256 7000"),
        ];
        writeFileSync(join(dir, "out.txt"), lines.join("\n") + "\n");
        writeFileSync(fake, `#!/bin/sh\ncat ${join(dir, "out.txt")}\nsleep 30\n`);
        chmodSync(fake, 0o755);
        const records: ProcessRecord[] = [];
        const drops: [DropReason, number][] = [];
        const src = new BpftraceSource({
          bpftrace: fake,
          canary: false, // a fake bpftrace runs no programs: the raw source is what is tested here
          onRecord: (r) => records.push(r),
          onDrop: (reason, n) => drops.push([reason, n]),
        });
        await src.start();
        try {
          const deadline = Date.now() + 20_000; // safety net only
          while (records.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        } finally {
          await src.stop();
        }
        assert.deepEqual(
          records.map((r) => r.kind),
          ["exec", "exit"],
        );
        assert.equal(src.counts.lost, 3);
        // garbage, the huge line, the short header, the cut line
        assert.equal(src.counts.malformed, 4);
        assert.ok(drops.some(([r, n]) => r === "lost" && n === 3));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  test(
    "a source that cannot start says why, with a code (needs root)",
    { skip: rootSkipReason() },
    async () => {
      const src = new BpftraceSource({
        bpftrace: "/nonexistent/bpftrace",
        onRecord: () => undefined,
        onDrop: () => undefined,
      });
      await assert.rejects(src.start(), (e: Error & { code?: string }) => {
        assert.equal(e.code, "RUNTIME_SOURCE_FAILED");
        assert.match(e.message, /Cannot start the process event source/);
        return true;
      });
    },
  );
});
