// Who owns which pod CIDR, as every node computes it from the store (src/cluster/pod-cidrs.ts): pure.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CLUSTER_KEYS } from "../../src/cluster/keys.js";
import type { MirrorEntry } from "../../src/cluster/mirror.js";
import type { PeerRecord } from "../../src/cluster/node-record.js";
import { ownedPodCidrs } from "../../src/cluster/pod-cidrs.js";
import { parsePrefix, prefixString, type Prefix } from "../../src/labels/cidr.js";

const prefix = (s: string): Prefix => parsePrefix(s) as Prefix;

function record(name: string, cidr: string): PeerRecord {
  return {
    record: {
      v: 1,
      name,
      addresses: {},
      podCidrs: [cidr],
      labels: {},
      routing: "native",
      bootId: "b",
      startedAt: "2026-12-05T00:00:00Z",
    },
    podCidrs: [prefix(cidr)],
    createRevision: 1,
  };
}

const claim = (ipv4: string, createRevision: number, modRevision: number): MirrorEntry => ({
  value: JSON.stringify({ v: 1, ipv4, allocated: true }),
  createRevision,
  modRevision,
});

test("a claim rewritten later (widened over another node's range) counts from its rewrite: it takes nothing", () => {
  // x claimed 10.1.0.0/24 at revision 5, y claimed 10.1.1.0/24 at 6, then x rewrote its key to the /16
  // (etcd keeps the key's createRevision 5 across that put).
  const records = new Map([
    ["x", record("x", "10.1.0.0/16")],
    ["y", record("y", "10.1.1.0/24")],
  ]);
  const claims = new Map([
    [CLUSTER_KEYS.podCidrs + "x", claim("10.1.0.0/16", 5, 9)],
    [CLUSTER_KEYS.podCidrs + "y", claim("10.1.1.0/24", 6, 6)],
  ]);
  const bad: string[] = [];
  const owned = ownedPodCidrs(records, claims, (why) => bad.push(why));
  assert.deepEqual(
    (owned.get("y") ?? []).map(prefixString),
    ["10.1.1.0/24"],
    "y keeps the range it claimed first",
  );
  assert.deepEqual(owned.get("x"), [], "the widened claim loses to the claim made before the rewrite");
  assert.ok(bad.some((b) => b.startsWith("node x")));
});

test("claims that do not overlap are each owned by their node", () => {
  const records = new Map([
    ["x", record("x", "10.1.0.0/24")],
    ["y", record("y", "10.1.1.0/24")],
  ]);
  const claims = new Map([
    [CLUSTER_KEYS.podCidrs + "x", claim("10.1.0.0/24", 5, 5)],
    [CLUSTER_KEYS.podCidrs + "y", claim("10.1.1.0/24", 6, 6)],
  ]);
  const owned = ownedPodCidrs(records, claims, () => undefined);
  assert.deepEqual((owned.get("x") ?? []).map(prefixString), ["10.1.0.0/24"]);
  assert.deepEqual((owned.get("y") ?? []).map(prefixString), ["10.1.1.0/24"]);
});
