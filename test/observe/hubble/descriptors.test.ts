/** The committed descriptor set is the one protoc builds from src/observe/hubble/proto today. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { hubbleSchema } from "../../../src/observe/hubble/schema.js";

const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

test("src/observe/hubble/descriptors.ts is what scripts/gen-hubble-descriptors.mjs makes of the protos", () => {
  const made = execFileSync("node", [`${ROOT}scripts/gen-hubble-descriptors.mjs`, "--print"], {
    encoding: "utf8",
  });
  const committed = readFileSync(`${ROOT}src/observe/hubble/descriptors.ts`, "utf8");
  assert.equal(committed, made, "run node scripts/gen-hubble-descriptors.mjs and commit the result");
});

test("the schema names Hubble's messages and the Observer service at Hubble's paths", () => {
  const s = hubbleSchema();
  assert.equal(s.Flow.typeName, "flow.Flow");
  assert.deepEqual(
    s.Observer.methods.map((m) => m.name),
    ["GetFlows", "GetNodes", "GetNamespaces", "ServerStatus"],
  );
  assert.equal(s.Flow.fields.find((f) => f.name === "egress_denied_by")?.number, 21004);
  assert.equal(s.Flow.fields.find((f) => f.name === "uuid")?.number, 34);
});
