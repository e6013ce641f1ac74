import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MembraneError } from "../../src/errors.js";
import { checkFilterShape } from "../../src/agent/routes.js";

describe("flow filters from the API are shape-checked before compiling", () => {
  const bad: [string, unknown, string][] = [
    ["a filter that is not an object", [], "filter must be an object"],
    ["an unknown list", { allowlist: [], anylist: [] }, "filter.anylist is not allowlist or denylist"],
    ["a list that is not a list", { allowlist: {} }, "filter.allowlist must be a list"],
    ["a filter that is not an object", { allowlist: ["x"] }, "filter.allowlist[0] must be an object"],
    [
      "a misspelled field (would silently widen the filter)",
      { allowlist: [{ source_podd: ["a"] }] },
      "filter.allowlist[0].source_podd is not a flow filter field",
    ],
    [
      "a field that is not a list",
      { denylist: [{ verdict: "DROPPED" }] },
      "filter.denylist[0].verdict must be a list",
    ],
    [
      "an object where strings belong",
      { allowlist: [{ source_pod: [{}] }] },
      "filter.allowlist[0].source_pod values must be strings",
    ],
    [
      "an event type without a type",
      { allowlist: [{ event_type: [{ sub_type: 1 }] }] },
      "filter.allowlist[0].event_type values must be {type, sub_type?}",
    ],
    [
      "too many values",
      { allowlist: [{ source_ip: new Array(300).fill("10.0.0.1") }] },
      "at most 256 values",
    ],
  ];
  for (const [name, v, msg] of bad) {
    test(`rejects ${name}`, () =>
      assert.throws(
        () => checkFilterShape(v),
        (e: unknown) =>
          e instanceof MembraneError && e.code === "API_REQUEST_INVALID" && e.message.includes(msg),
      ));
  }
  test("accepts what filterFromFlags produces", () => {
    assert.doesNotThrow(() =>
      checkFilterShape({
        allowlist: [
          {
            source_pod: ["default/x"],
            verdict: ["DROPPED"],
            event_type: [{ type: 5 }],
            source_identity: [256],
            reply: [false],
          },
        ],
        denylist: [],
      }),
    );
  });
});
