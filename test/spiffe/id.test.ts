/** SPIFFE IDs parsed as SPIFFE-ID.md says; identities named as Cilium names them; the descriptor is protoc's. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  checkTrustDomain,
  identityOfSpiffeId,
  identitySpiffeId,
  parseSpiffeId,
} from "../../src/spiffe/id.js";
import { WORKLOAD_DESCRIPTOR_SET_B64 } from "../../src/spiffe/proto/workload-descriptor.js";
import { protocDescriptorSet } from "./official-proto.js";

describe("SPIFFE IDs", () => {
  const refused: { name: string; id: string; why: RegExp }[] = [
    { name: "upper-case scheme", id: "SPIFFE://td/a", why: /scheme/ },
    { name: "http scheme", id: "https://td/a", why: /scheme/ },
    { name: "empty trust domain", id: "spiffe:///a", why: /trust domain is empty/ },
    { name: "a port", id: "spiffe://td:443/a", why: /no port/ },
    { name: "a user", id: "spiffe://u@td/a", why: /no port, user/ },
    { name: "upper case trust domain", id: "spiffe://TD/a", why: /upper case/ },
    { name: "an empty segment", id: "spiffe://td//a", why: /empty/ },
    { name: "a trailing slash", id: "spiffe://td/a/", why: /empty/ },
    { name: "a dot segment", id: "spiffe://td/./a", why: /'\.'/ },
    { name: "a dot-dot segment", id: "spiffe://td/a/..", why: /'\.\.'/ },
    { name: "percent-encoding", id: "spiffe://td/a%20b", why: /characters/ },
    { name: "a query", id: "spiffe://td/a?x=1", why: /characters/ },
    { name: "a fragment", id: "spiffe://td/a#x", why: /characters/ },
    { name: "too long", id: `spiffe://td/${"a".repeat(2100)}`, why: /longer than 2048/ },
  ];
  for (const c of refused) {
    test(`refuses ${c.name}`, () => assert.throws(() => parseSpiffeId(c.id), c.why));
  }

  test("identities: spiffe://<td>/identity/<n>, and back", () => {
    assert.equal(identitySpiffeId("cluster.local", 4242), "spiffe://cluster.local/identity/4242");
    assert.equal(
      identityOfSpiffeId(parseSpiffeId("spiffe://cluster.local/identity/4242"), "cluster.local"),
      4242,
    );
    assert.equal(
      identityOfSpiffeId(parseSpiffeId("spiffe://other/identity/4242"), "cluster.local"),
      undefined,
    );
    assert.equal(
      identityOfSpiffeId(parseSpiffeId("spiffe://cluster.local/identity/042"), "cluster.local"),
      undefined,
    );
    assert.equal(
      identityOfSpiffeId(parseSpiffeId("spiffe://cluster.local/identity/1/x"), "cluster.local"),
      undefined,
    );
    assert.throws(() => identitySpiffeId("cluster.local", 0), /not a positive integer/);
    assert.throws(() => checkTrustDomain("Cluster.Local"), /--trust-domain/);
    assert.throws(() => checkTrustDomain(""), /1 to 255/);
  });

  test("the committed Workload API descriptor is what protoc makes of workload.proto", () => {
    assert.equal(WORKLOAD_DESCRIPTOR_SET_B64, protocDescriptorSet().toString("base64"));
  });
});
