import assert from "node:assert/strict";
import { hubbleJsonLine, hubbleRecord } from "../../src/observe/hubble/json.js";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { FlowExporter } from "../../src/observe/export.js";
import type { Flow, FlowRecord } from "../../src/observe/flow.js";
import { parseFlowLines, selectRecords } from "../../src/observe/input.js";
import { filterFromFlags } from "../../src/observe/flags.js";
import { NAMES, SAMPLES } from "./samples.js";

const rec = (f: Flow): FlowRecord => ({ flow: f, time: f.time });
function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "mbt-export-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const lines = (p: string): FlowRecord[] => parseFlowLines(readFileSync(p, "utf8"), p);

describe("FlowExporter", () => {
  test("writes JSON lines that read back equal, through allow and deny filters, always keeping lost events", () =>
    withDir((dir) => {
      const path = join(dir, "flows.json");
      const x = new FlowExporter({
        path,
        filter: { allowlist: [{ verdict: ["DROPPED", "AUDIT"] }], denylist: [{ ip_version: ["IPv6"] }] },
      });
      x.start();
      for (const n of NAMES) x.write(rec(SAMPLES[n]!));
      x.write({
        lost_events: { source: "HUBBLE_RING_BUFFER", num_events_lost: 2 },
        time: "2024-11-23T12:00:09.000Z",
      });
      x.close();
      const got = lines(path);
      assert.deepEqual(got, [
        hubbleRecord(rec(SAMPLES.deny!)),
        hubbleRecord(rec(SAMPLES.audit!)),
        {
          lost_events: { source: "HUBBLE_RING_BUFFER", num_events_lost: "2" },
          time: "2024-11-23T12:00:09.000Z",
        },
      ]);
      assert.deepEqual(x.stats(), { written: 3, filtered: 3, rotations: 0, errors: 0 });
      assert.equal(statSync(path).mode & 0o777, 0o600, "flows are readable by the agent's user only");
    }));

  test("rotates by size, keeping maxBackups files, newest in .1, none over the limit", () =>
    withDir((dir) => {
      const path = join(dir, "flows.json");
      const one = hubbleJsonLine(rec(SAMPLES.deny!)).length + 1;
      const x = new FlowExporter({ path, maxSizeBytes: one * 3, maxBackups: 2, fsync: "never" });
      x.start();
      for (let i = 0; i < 20; i++)
        x.write(
          rec({
            ...SAMPLES.deny!,
            Summary: `TCP Flags: SYN` + " ".repeat(0),
            time: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
          }),
        );
      x.close();
      const seconds = (p: string): number[] => lines(p).map((r) => new Date(r.time).getUTCSeconds());
      assert.deepEqual(seconds(path), [18, 19]);
      assert.deepEqual(seconds(`${path}.1`), [15, 16, 17]);
      assert.deepEqual(seconds(`${path}.2`), [12, 13, 14]);
      assert.equal(existsSync(`${path}.3`), false);
      for (const p of [path, `${path}.1`, `${path}.2`])
        assert.ok(statSync(p).size <= one * 3, `${p} within the limit`);
      assert.equal(x.stats().rotations, 6);
    }));

  test("an http headers field never reaches the file", () =>
    withDir((dir) => {
      const path = join(dir, "flows.json");
      const x = new FlowExporter({ path });
      x.start();
      const f = {
        ...SAMPLES.http!,
        l7: {
          type: "REQUEST",
          http: { method: "GET", url: "/", headers: [{ key: "authorization", value: "Bearer s3cret" }] },
        },
      } as unknown as Flow;
      x.write(rec(f));
      x.close();
      const text = readFileSync(path, "utf8");
      assert.ok(!text.includes("s3cret"));
      assert.ok(!text.includes("headers"));
      assert.ok(text.includes('"method":"GET"'));
    }));

  test("appends to an existing file across restarts", () =>
    withDir((dir) => {
      const path = join(dir, "flows.json");
      for (const n of ["deny", "dns"]) {
        const x = new FlowExporter({ path });
        x.start();
        x.write(rec(SAMPLES[n]!));
        x.close();
      }
      assert.equal(lines(path).length, 2);
    }));

  test("an unwritable path is a FLOW_EXPORT_FAILED error naming it", () =>
    withDir((dir) => {
      const path = join(dir, "missing", "flows.json");
      assert.throws(() => new FlowExporter({ path }).start(), {
        code: "FLOW_EXPORT_FAILED",
        message: new RegExp(`^Cannot export flows to ${path}: ENOENT`),
      });
    }));
});

describe("offline input", () => {
  test("--input: saved flows answer as the agent would (filter, --last)", () => {
    const text = NAMES.map((n) => JSON.stringify(rec(SAMPLES[n]!))).join("\n") + "\n";
    const records = parseFlowLines(text, "saved.json");
    const got = selectRecords(records, filterFromFlags({ verdict: "DROPPED", last: 1 }));
    assert.deepEqual(got, [rec(SAMPLES.spoof!)]);
  });

  test("bare Hubble flow objects are accepted too, and blank lines skipped", () => {
    const got = parseFlowLines(`${JSON.stringify(SAMPLES.dns)}\n\n`, "h.json");
    assert.deepEqual(got, [{ flow: SAMPLES.dns, node_name: "kind/node1", time: SAMPLES.dns!.time }]);
  });

  test("a malformed line names file and line", () => {
    assert.throws(() => parseFlowLines(`${JSON.stringify(rec(SAMPLES.dns!))}\n{oops\n`, "saved.json"), {
      code: "FLOW_FILTER_INVALID",
      message: /^Cannot read flows from saved\.json line 2: not JSON/,
    });
    assert.throws(() => parseFlowLines(`[1]\n`, "a.json"), {
      message: "Cannot read flows from a.json line 1: not a JSON object",
    });
  });
});
