import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError } from "../../../src/errors.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";
import { FIXTURES } from "./fixtures.js";

describe("TracingPolicy constructs of Tetragon's example policies (our fixtures)", () => {
  for (const f of FIXTURES) {
    const want = f.want;
    test(`${f.name}: ${want === "loads" ? "loads" : `${want[0]} at ${want[1]}`}`, () => {
      if (want === "loads") {
        assert.ok(parseTracingPolicies(f.yaml, `${f.name}.yaml`).length > 0);
        return;
      }
      assert.throws(
        () => parseTracingPolicies(f.yaml, `${f.name}.yaml`),
        (e) => {
          assert.ok(isMembraneError(e), String(e));
          assert.deepEqual([e.code, e.issues[0]?.path], [...want], e.message);
          return true;
        },
      );
    });
  }
});
