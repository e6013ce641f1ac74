/**
 * The parts of the PolicyEngine on their own: EndpointTable, Repository,
 * PolicyCache and OutsideIdentities (the engine's own tests cover them
 * together).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { IdentityAllocator } from "../../src/identity/allocator.js";
import { IPCache } from "../../src/ipcache/ipcache.js";
import { LabelSet } from "../../src/labels/label.js";
import { parsePolicies } from "../../src/policy/api/index.js";
import { EndpointTable } from "../../src/policy/endpoint-table.js";
import { OutsideIdentities } from "../../src/policy/outside-identities.js";
import { PolicyCache, type ComputedPolicy } from "../../src/policy/policy-cache.js";
import { Repository } from "../../src/policy/repository.js";
import type { DirectionPolicy } from "../../src/policy/resolve.js";
import { SelectorCache } from "../../src/policy/selectorcache.js";

const cache = () => new SelectorCache({ cluster: "default", services: new Map() });

describe("EndpointTable", () => {
  const ident = (id: number) => ({ id, labels: LabelSet.EMPTY });
  const rec = (name: string, ips: string[], id = 300) => ({
    key: `prod/${name}`,
    spec: { name, namespace: "prod", labels: {}, ips },
    labels: LabelSet.EMPTY,
    identity: ident(id),
  });

  test("a rejected address changes nothing, and the error names the endpoint and the address", () => {
    const ipcache = new IPCache(false);
    const t = new EndpointTable({ ipcache, cluster: "default" });
    t.setLocal(rec("a", ["10.0.0.1"]));
    t.setRemote({ spec: { ip: "10.1.0.1", namespace: "prod", labels: {} }, identity: ident(301) });
    assert.throws(
      () => t.checkLocal("prod/b", ["10.0.0.1"]),
      /prod\/b: 10\.0\.0\.1 already belongs to prod\/a/,
    );
    assert.throws(() => t.checkLocal("prod/b", ["10.1.0.1"]), /10\.1\.0\.1 belongs to a remote endpoint/);
    assert.throws(() => t.checkLocal("prod/b", ["10.0.0.300"]), /"10\.0\.0\.300" is not an IP address/);
    assert.throws(() => t.checkRemote("10.0.0.1"), /belongs to local endpoint prod\/a/);
    t.checkLocal("prod/a", ["10.0.0.1"]); // its own address: fine
    assert.equal(ipcache.lookup("10.0.0.1").identity, 300);
    assert.equal(t.byAddress("10.0.0.1")?.key, "prod/a");
    assert.equal(t.get("prod/b"), undefined);
  });

  test("an update moves the addresses; a delete frees them", () => {
    const ipcache = new IPCache(false);
    const t = new EndpointTable({ ipcache, cluster: "default" });
    t.setLocal(rec("a", ["10.0.0.1"]));
    const old = t.setLocal(rec("a", ["10.0.0.2"], 302));
    assert.equal(old?.identity.id, 300);
    assert.equal(ipcache.lookup("10.0.0.1").entry, undefined);
    assert.equal(ipcache.lookup("10.0.0.2").identity, 302);
    assert.equal(t.deleteLocal("prod/a")?.key, "prod/a");
    assert.equal(t.deleteLocal("prod/a"), undefined);
    assert.equal(ipcache.lookup("10.0.0.2").entry, undefined);
    t.checkRemote("10.0.0.2");
  });

  test("find names the endpoint missing or the ones to choose from", () => {
    const t = new EndpointTable({ ipcache: new IPCache(false), cluster: "default" });
    t.setLocal(rec("a", []));
    t.setLocal({ ...rec("a", []), key: "dev/a", spec: { name: "a", namespace: "dev", labels: {}, ips: [] } });
    assert.equal(t.find("a", "dev").key, "dev/a");
    assert.throws(() => t.find("a", undefined), /"a" means: prod\/a, dev\/a \(write namespace\/name\)/);
    assert.throws(() => t.find("b", "prod"), /Cannot find endpoint "prod\/b"/);
  });
});

describe("Repository", () => {
  const policy = (app: string) =>
    parsePolicies(
      `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: ${app}}}
  ingress: [{}]
`,
      "p.yaml",
    )[0]!;

  test("upsert returns the old and new rules; the subject selectors of replaced rules are released", () => {
    const c = cache();
    const labels = LabelSet.from([
      { source: "k8s", key: "app", value: "a" },
      { source: "k8s", key: "io.kubernetes.pod.namespace", value: "prod" },
    ]);
    c.upsertIdentity({ id: 300, labels });
    const r = new Repository(c);
    const first = policy("a");
    assert.equal(r.upsert(first).length, 1);
    assert.equal(r.rulesSelecting(300).length, 1);
    // The subject selector is held once by the repository: look at it without keeping it.
    const key = c.add({ kind: "endpoints", selector: first.rules[0]!.subject });
    c.remove(key);
    assert.deepEqual([...c.selections(key)], [300]);
    const second = policy("b");
    assert.deepEqual(r.upsert(second), [...first.rules, ...second.rules]);
    assert.equal(r.list().length, 1);
    assert.equal(r.rulesSelecting(300).length, 0);
    assert.deepEqual([...c.selections(key)], [], "the replaced rule's subject selector is released");
    assert.deepEqual(r.delete(second.ref), second.rules);
    assert.equal(r.delete(second.ref), undefined);
    assert.deepEqual(r.rules(), []);
  });
});

describe("PolicyCache", () => {
  const dir = (keys: string[]): DirectionPolicy =>
    ({ selectorKeys: keys, rules: [] }) as unknown as DirectionPolicy;
  const computed = (identity: number, keys: string[]): ComputedPolicy => ({
    identity,
    ingress: dir(keys),
    egress: dir([]),
    revision: 1,
  });

  test("endpoints with one signature share one computation; a changed selector dirties its holders only", () => {
    const pc = new PolicyCache(cache());
    let computations = 0;
    const compute = (id: number, keys: string[]) => (): ComputedPolicy => {
      computations++;
      return computed(id, keys);
    };
    pc.get("prod/a1", "300|", compute(300, ["k1"]));
    pc.get("prod/a2", "300|", compute(300, ["k1"]));
    pc.get("prod/b", "301|", compute(301, ["k2"]));
    assert.equal(computations, 2);
    assert.equal(pc.needsRegeneration("prod/a1"), false);
    pc.markChanged(["k1"]);
    assert.deepEqual(
      ["prod/a1", "prod/a2", "prod/b"].map((k) => pc.needsRegeneration(k)),
      [true, true, false],
    );
    pc.get("prod/a1", "300|", compute(300, ["k1"]));
    pc.get("prod/a2", "300|", compute(300, ["k1"]));
    assert.equal(computations, 3);
    pc.staleFor(new Set([301]));
    assert.equal(pc.needsRegeneration("prod/b"), true);
    pc.forget("prod/b");
    assert.equal(pc.needsRegeneration("prod/b"), true, "never computed again");
  });
});

describe("OutsideIdentities", () => {
  test("learns addresses outside the cluster only, and retires an identity after its successor exists", () => {
    const allocator = new IdentityAllocator();
    const ipcache = new IPCache(false);
    ipcache.setExact("10.0.0.1", 300, "endpoint");
    const events: string[] = [];
    const o = new OutsideIdentities({
      allocator,
      ipcache,
      cache: cache(),
      dualStack: false,
      changed: () => {},
      release: (id) => {
        events.push(`release ${id}`);
        allocator.release(id);
      },
    });
    o.learn("a.example.com", ["10.0.0.1", "198.51.100.7", "not-an-ip"]);
    assert.deepEqual(
      [...o.learned()].map(([ip]) => ip),
      ["198.51.100.7"],
    );
    o.sync([], []);
    const first = ipcache.lookup("198.51.100.7").identity;
    assert.ok(allocator.get(first)?.labels.has("fqdn", "a.example.com"));
    o.learn("b.example.com", ["198.51.100.7"]);
    o.sync([], []);
    const second = ipcache.lookup("198.51.100.7").identity;
    assert.notEqual(second, first);
    assert.deepEqual(events, [`release ${first}`]);
    assert.equal(o.forget("a.example.com", "198.51.100.7"), true);
    assert.equal(o.forget("a.example.com", "198.51.100.7"), false);
  });
});
