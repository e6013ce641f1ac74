import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LabelSet, parseLabel } from "../../src/labels/label.js";
import { Selector, type LabelSelectorSpec } from "../../src/labels/selector.js";
import { identityRelevant, workloadLabels } from "../../src/labels/k8s.js";
import { MembraneError } from "../../src/errors.js";

const pod = LabelSet.parse([
  "k8s:app=web",
  "k8s:tier=front",
  "k8s:io.kubernetes.pod.namespace=prod",
  "reserved:host",
]);

describe("selector matching", () => {
  const cases: { name: string; sel: LabelSelectorSpec; want: boolean }[] = [
    { name: "empty selector matches everything", sel: {}, want: true },
    {
      name: "matchLabels without source matches any source",
      sel: { matchLabels: { app: "web" } },
      want: true,
    },
    {
      name: "matchLabels with the right source matches",
      sel: { matchLabels: { "k8s:app": "web" } },
      want: true,
    },
    {
      name: "matchLabels with another source does not match",
      sel: { matchLabels: { "cidr:app": "web" } },
      want: false,
    },
    {
      name: "matchLabels with a wrong value does not match",
      sel: { matchLabels: { app: "db" } },
      want: false,
    },
    { name: "matchLabels are ANDed", sel: { matchLabels: { app: "web", tier: "back" } }, want: false },
    {
      name: "reserved label with empty value matches",
      sel: { matchLabels: { "reserved:host": "" } },
      want: true,
    },
    {
      name: "In matches one of the values",
      sel: { matchExpressions: [{ key: "app", operator: "In", values: ["db", "web"] }] },
      want: true,
    },
    {
      name: "In without the value fails",
      sel: { matchExpressions: [{ key: "app", operator: "In", values: ["db"] }] },
      want: false,
    },
    {
      name: "NotIn matches when the value differs",
      sel: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["db"] }] },
      want: true,
    },
    {
      name: "NotIn fails on the value",
      sel: { matchExpressions: [{ key: "app", operator: "NotIn", values: ["web"] }] },
      want: false,
    },
    {
      name: "NotIn matches an absent key",
      sel: { matchExpressions: [{ key: "color", operator: "NotIn", values: ["red"] }] },
      want: true,
    },
    {
      name: "Exists matches a present key",
      sel: { matchExpressions: [{ key: "tier", operator: "Exists" }] },
      want: true,
    },
    {
      name: "Exists fails on an absent key",
      sel: { matchExpressions: [{ key: "color", operator: "Exists" }] },
      want: false,
    },
    {
      name: "DoesNotExist matches an absent key",
      sel: { matchExpressions: [{ key: "color", operator: "DoesNotExist" }] },
      want: true,
    },
    {
      name: "DoesNotExist fails on a present key",
      sel: { matchExpressions: [{ key: "app", operator: "DoesNotExist" }] },
      want: false,
    },
    {
      name: "matchLabels and matchExpressions are ANDed",
      sel: {
        matchLabels: { app: "web" },
        matchExpressions: [{ key: "tier", operator: "In", values: ["back"] }],
      },
      want: false,
    },
    {
      name: "namespace key with k8s source matches",
      sel: { matchLabels: { "k8s:io.kubernetes.pod.namespace": "prod" } },
      want: true,
    },
  ];
  for (const c of cases) {
    test(c.name, () => assert.equal(Selector.fromLabelSelector(c.sel).matches(pod), c.want));
  }
});

describe("selector validation", () => {
  const bad: { name: string; sel: LabelSelectorSpec; msg: RegExp }[] = [
    {
      name: "unknown operator is rejected",
      sel: { matchExpressions: [{ key: "a", operator: "Equals", values: ["x"] }] },
      msg: /operator "Equals"/,
    },
    {
      name: "In without values is rejected",
      sel: { matchExpressions: [{ key: "a", operator: "In" }] },
      msg: /without values/,
    },
    {
      name: "Exists with values is rejected",
      sel: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] },
      msg: /Cannot give values/,
    },
    {
      name: "key with a space is rejected",
      sel: { matchLabels: { "bad key": "x" } },
      msg: /label key "bad key"/,
    },
    {
      name: "value longer than 63 characters is rejected",
      sel: { matchLabels: { a: "x".repeat(64) } },
      msg: /label value/,
    },
    { name: "key ending in a dash is rejected", sel: { matchLabels: { "app-": "x" } }, msg: /label key/ },
  ];
  for (const c of bad) {
    test(c.name, () =>
      assert.throws(
        () => Selector.fromLabelSelector(c.sel),
        (e: unknown) => e instanceof MembraneError && e.code === "LABEL_INVALID" && c.msg.test(e.message),
      ),
    );
  }
  test("equal selectors have equal canonical strings regardless of order", () => {
    const a = Selector.fromLabelSelector({ matchLabels: { a: "1", b: "2" } });
    const b = Selector.fromLabelSelector({
      matchExpressions: [{ key: "b", operator: "In", values: ["2"] }],
      matchLabels: { a: "1" },
    });
    assert.equal(a.toString(), b.toString());
  });
});

describe("labels", () => {
  test("parseLabel splits source, key and value", () => {
    assert.deepEqual(parseLabel("k8s:app=web"), { source: "k8s", key: "app", value: "web" });
    assert.deepEqual(parseLabel("reserved:host"), { source: "reserved", key: "host", value: "" });
  });
  test("an unknown prefix is part of the key, not a source", () => {
    assert.deepEqual(parseLabel("foo:bar=1"), { source: "k8s", key: "foo:bar", value: "1" });
  });
  test("label sets are canonical: same labels in another order are equal", () => {
    assert.ok(LabelSet.parse(["a=1", "b=2"]).equals(LabelSet.parse(["b=2", "a=1"])));
  });
  test("workload labels carry the derived pod labels", () => {
    const l = workloadLabels({ namespace: "prod", labels: { app: "web" }, namespaceLabels: { team: "a" } });
    assert.equal(l.get("k8s", "io.kubernetes.pod.namespace"), "prod");
    assert.equal(l.get("k8s", "io.cilium.k8s.policy.serviceaccount"), "default");
    assert.equal(l.get("k8s", "io.cilium.k8s.policy.cluster"), "default");
    assert.equal(l.get("k8s", "io.cilium.k8s.namespace.labels.team"), "a");
    assert.equal(l.get("k8s", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"), "prod");
  });
  const imitations = [
    "io.kubernetes.pod.namespace",
    "io.cilium.k8s.namespace.labels.team",
    "io.cilium.k8s.policy.serviceaccount",
    "reserved:host",
  ];
  for (const key of imitations) {
    test(`a workload label imitating "${key}" is rejected`, () =>
      assert.throws(
        () => workloadLabels({ namespace: "prod", labels: { [key]: "x" } }),
        (e: unknown) => e instanceof MembraneError && e.code === "LABEL_INVALID" && e.message.includes(key),
      ));
  }
  test("identity-relevant labels drop per-pod keys and keep namespace labels", () => {
    const l = workloadLabels({
      namespace: "prod",
      labels: { app: "web", "pod-template-hash": "abc", "statefulset.kubernetes.io/pod-name": "w-0" },
    });
    const r = identityRelevant(l);
    assert.equal(r.get("k8s", "app"), "web");
    assert.equal(r.get("k8s", "pod-template-hash"), undefined);
    assert.equal(r.get("k8s", "statefulset.kubernetes.io/pod-name"), undefined);
    assert.equal(r.get("k8s", "io.kubernetes.pod.namespace"), "prod");
  });
});
