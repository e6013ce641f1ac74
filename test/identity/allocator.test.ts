import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { IdentityAllocator } from "../../src/identity/allocator.js";
import { ID, LOCAL_ID_MIN, RESERVED_LABELS } from "../../src/identity/reserved.js";
import { LabelSet } from "../../src/labels/label.js";

describe("identities", () => {
  const reserved: [string, number][] = [
    ["host", 1],
    ["world", 2],
    ["unmanaged", 3],
    ["health", 4],
    ["init", 5],
    ["remote-node", 6],
    ["kube-apiserver", 7],
    ["ingress", 8],
    ["world-ipv4", 9],
    ["world-ipv6", 10],
  ];
  for (const [name, id] of reserved) {
    test(`reserved identity ${name} is ${id}`, () =>
      assert.ok(RESERVED_LABELS.get(id)?.has("reserved", name)));
  }
  test("kube-apiserver also carries remote-node, as in Cilium", () =>
    assert.ok(RESERVED_LABELS.get(ID.kubeApiserver)?.has("reserved", "remote-node")));
  test("cluster identities start at 256 and equal labels share one", () => {
    const a = new IdentityAllocator();
    const x = a.allocate(LabelSet.parse(["app=a"]));
    const y = a.allocate(LabelSet.parse(["app=a"]));
    const z = a.allocate(LabelSet.parse(["app=b"]));
    assert.equal(x.id, 256);
    assert.equal(y.id, 256);
    assert.equal(z.id, 257);
  });
  test("local identities start at 2^24", () => {
    const a = new IdentityAllocator();
    assert.equal(a.allocateLocal(LabelSet.parse(["cidr:10.0.0.0/8"])).id, LOCAL_ID_MIN);
  });
  test("an identity is freed only when its last user releases it", () => {
    const a = new IdentityAllocator();
    const x = a.allocate(LabelSet.parse(["app=a"]));
    a.allocate(LabelSet.parse(["app=a"]));
    a.release(x.id);
    assert.ok(a.get(x.id));
    a.release(x.id);
    assert.equal(a.get(x.id), undefined);
  });
  test("reserved identities are never freed", () => {
    const a = new IdentityAllocator();
    a.release(ID.world);
    assert.ok(a.get(ID.world));
  });
  test("restored identities keep their numbers", () => {
    const labels = LabelSet.parse(["app=a"]);
    const a = new IdentityAllocator({ restore: [{ id: 4000, labels }] });
    assert.equal(a.allocate(labels).id, 4000);
  });
});
