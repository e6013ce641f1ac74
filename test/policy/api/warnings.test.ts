import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parsePolicies, type PolicyWarning, warningText } from "../../../src/policy/api/index.js";
import { ccnp, cnp } from "./helpers.js";

function parse(text: string): { names: string[]; warnings: PolicyWarning[] } {
  const warnings: PolicyWarning[] = [];
  const res = parsePolicies(text, "w.yaml", { onWarning: (w) => warnings.push(w) });
  return { names: res.map((r) => `${r.ref.namespace ?? "-"}/${r.ref.name}`), warnings };
}

describe("policy parser warnings (accepted, but the user is told)", () => {
  test("a CCNP whose metadata carries a namespace is accepted cluster-wide with a warning naming the line", () => {
    const text = ccnp("endpointSelector: {}").replace("name: cw", "name: cw\n  namespace: team-a");
    const { names, warnings } = parse(text);
    assert.deepEqual(names, ["-/cw"]);
    assert.equal(warnings.length, 1);
    const w = warnings[0] as PolicyWarning;
    assert.equal(w.path, "metadata.namespace");
    assert.equal(w.line, 5);
    assert.match(w.message, /metadata.namespace is ignored \(the Kubernetes API server drops it\)/);
    assert.match(warningText(w), /^warning: w\.yaml:5: metadata\.namespace: /);
  });

  test("the CCNP's rules still select across namespaces (the namespace is not injected)", () => {
    const text = ccnp("endpointSelector: {matchLabels: {app: a}}").replace(
      "name: cw",
      "name: cw\n  namespace: team-a",
    );
    const res = parsePolicies(text, "w.yaml");
    assert.equal(res[0]?.rules[0]?.subject.toString(), "any:app=a");
  });

  test("a valid CNP gives no warning", () => {
    assert.deepEqual(parse(cnp("endpointSelector: {}")).warnings, []);
  });

  test("a rejected file reports no warnings (its problems are the error)", () => {
    const text =
      ccnp("endpointSelector: {}").replace("name: cw", "name: cw\n  namespace: team-a") +
      "---\n" +
      cnp("endpointSelector: {matchLabel: {}}");
    const warnings: PolicyWarning[] = [];
    assert.throws(() => parsePolicies(text, "w.yaml", { onWarning: (w) => warnings.push(w) }), /1 problem/);
    assert.deepEqual(warnings, []);
  });

  test("warnings are capped like problems: the first 100, then one line saying how many more", () => {
    const one = (i: number): string =>
      ccnp("endpointSelector: {}").replace("name: cw", `name: cw${i}\n  namespace: team-a`);
    const { names, warnings } = parse(Array.from({ length: 130 }, (_, i) => one(i)).join("---\n"));
    assert.equal(names.length, 130);
    assert.equal(warnings.length, 101);
    assert.ok(warnings.slice(0, 100).every((w) => w.path === "metadata.namespace"));
    assert.deepEqual(warnings[100], {
      file: "w.yaml",
      line: 1,
      path: "",
      message: "30 more warnings not shown",
    });
  });
});
