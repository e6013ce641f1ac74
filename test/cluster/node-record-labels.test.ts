// Node records are untrusted input: their labels (what fromNodes/toNodes select a remote node by) are
// checked like --node-labels; a record with malformed labels is refused with the reason (the node is skipped).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { nodeKey } from "../../src/cluster/keys.js";
import { parseNodeRecord } from "../../src/cluster/node-record.js";

const entry = (labels: unknown) => ({
  value: JSON.stringify({
    v: 1,
    name: "n1",
    addresses: { ipv4: "192.0.2.1" },
    podCidrs: ["10.200.0.0/24"],
    labels,
    routing: "native",
  }),
  createRevision: 1,
  modRevision: 1,
});

describe("node records: labels", () => {
  test("valid labels are kept", () => {
    const r = parseNodeRecord(nodeKey("n1"), entry({ role: "web", "topology.kubernetes.io/zone": "a" }));
    assert.equal(typeof r, "object");
    assert.deepEqual(typeof r === "object" ? r.record.labels : undefined, {
      role: "web",
      "topology.kubernetes.io/zone": "a",
    });
  });

  for (const [name, labels, why] of [
    ["a key with a source prefix", { "reserved:host": "" }, /labels .*source prefix/],
    ["a malformed key", { "bad key!": "x" }, /labels .*bad key!/],
    ["a value that is not a string", { role: 7 }, /labels has a value that is not a string/],
    ["a list", ["role=web"], /labels is not a map/],
    ["too many", Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])), /65 entries/],
  ] as const) {
    test(`${name} is refused with the reason`, () => {
      const r = parseNodeRecord(nodeKey("n1"), entry(labels));
      assert.equal(typeof r, "string");
      assert.match(String(r), why);
    });
  }
});
