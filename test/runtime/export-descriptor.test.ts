/** The committed descriptor set of our Tetragon event declaration is what protoc builds from it today. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { getEventsResponse } from "./tetragon-schema.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

test("src/runtime/proto/events-descriptor.ts is what scripts/gen-tetragon-descriptor.mjs makes of events.proto", () => {
  const made = execFileSync("node", [`${ROOT}scripts/gen-tetragon-descriptor.mjs`, "--print"], {
    encoding: "utf8",
  });
  const committed = readFileSync(`${ROOT}src/runtime/proto/events-descriptor.ts`, "utf8");
  assert.ok(
    committed.includes(`"${made.trim()}"`),
    "run node scripts/gen-tetragon-descriptor.mjs and commit the result",
  );
});

test("the declaration names Tetragon's messages at Tetragon's field numbers", () => {
  const d = getEventsResponse();
  const num = (name: string): number | undefined => d.fields.find((f) => f.name === name)?.number;
  assert.equal(d.typeName, "tetragon.GetEventsResponse");
  assert.deepEqual(
    [
      "process_exec",
      "process_exit",
      "process_kprobe",
      "process_tracepoint",
      "process_uprobe",
      "node_name",
      "time",
    ].map(num),
    [1, 5, 9, 10, 12, 1000, 1001],
  );
  const exec = d.fields.find((f) => f.name === "process_exec")?.message;
  const proc = exec?.fields.find((f) => f.name === "process")?.message;
  assert.equal(proc?.typeName, "tetragon.Process");
  assert.deepEqual(
    [
      "exec_id",
      "pid",
      "uid",
      "cwd",
      "binary",
      "arguments",
      "flags",
      "start_time",
      "auid",
      "pod",
      "parent_exec_id",
      "tid",
    ].map((n) => proc?.fields.find((f) => f.name === n)?.number),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16],
  );
});
