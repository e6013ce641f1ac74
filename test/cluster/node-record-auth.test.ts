// Node records are untrusted input: the `auth` of a record (handshake port, trust domain, CA roots
// that every other node will trust) is checked field by field; a bad one is refused naming the
// field, and the node is skipped (its roots never enter a bundle).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { nodeKey } from "../../src/cluster/keys.js";
import { parseNodeRecord } from "../../src/cluster/node-record.js";

const entry = (auth: unknown) => ({
  value: JSON.stringify({ v: 1, name: "n1", addresses: { ipv4: "192.0.2.1" }, podCidrs: ["10.200.0.0/24"], labels: {}, routing: "native", auth }), // prettier-ignore
  createRevision: 1,
  modRevision: 1,
});
const ok = { port: 4250, trustDomain: "cluster.local", roots: ["MIIBAA=="] };

describe("node records: auth", () => {
  test("a valid auth is kept", () => {
    const r = parseNodeRecord(nodeKey("n1"), entry(ok));
    assert.deepEqual(typeof r === "object" ? r.record.auth : r, ok);
  });
  for (const [name, auth, why] of [
    ["a list", [ok], /auth is not a map/],
    ["port 0", { ...ok, port: 0 }, /auth\.port is not a port/],
    ["a port as text", { ...ok, port: "4250" }, /auth\.port is not a port/],
    ["a trust domain with a slash", { ...ok, trustDomain: "a/b" }, /auth\.trustDomain/],
    ["no roots", { ...ok, roots: [] }, /auth\.roots is not a list of 1-8/],
    ["nine roots", { ...ok, roots: Array(9).fill("MIIBAA==") }, /auth\.roots is not a list of 1-8/],
    [
      "a root that is not base64",
      { ...ok, roots: ["-----BEGIN CERTIFICATE-----"] },
      /auth\.roots\[0\] is not base64/,
    ],
    ["an oversized root", { ...ok, roots: ["A".repeat(20000)] }, /auth\.roots\[0\]/],
  ] as const) {
    test(`${name} is refused naming the field`, () => {
      const r = parseNodeRecord(nodeKey("n1"), entry(auth));
      assert.equal(typeof r, "string");
      assert.match(String(r), why);
    });
  }
});
