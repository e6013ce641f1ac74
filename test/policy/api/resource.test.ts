import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parsePolicies } from "../../../src/policy/api/index.js";
import type { PolicyResource } from "../../../src/policy/types.js";
import { ccnp, cnp, knp, one, reject } from "./helpers.js";

const SPECS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: multi
  namespace: prod
spec:
  description: first
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEntities: [cluster]
specs:
- endpointSelector: {matchLabels: {app: b}}
  egressDeny:
  - toEntities: [world]
  - toCIDR: [10.0.0.0/8]
- endpointSelector: {matchLabels: {app: c}}
`;

describe("policy resources: metadata, spec/specs, origins, documents", () => {
  test("spec is imported first, then specs[i], each with its own path", () => {
    const r = one(SPECS);
    assert.deepEqual(r.ref, { kind: "CiliumNetworkPolicy", name: "multi", namespace: "prod" });
    assert.deepEqual(
      r.rules.map((x) => [x.path, x.subject.toString()]),
      [
        ["spec", "any:app=a,k8s:io.kubernetes.pod.namespace=prod"],
        ["specs[0]", "any:app=b,k8s:io.kubernetes.pod.namespace=prod"],
        ["specs[1]", "any:app=c,k8s:io.kubernetes.pod.namespace=prod"],
      ],
    );
  });

  test("rule origins name the element path, deny flag and the rule's description", () => {
    const r = one(SPECS);
    assert.deepEqual(r.rules[0]?.ingress[0]?.origin, {
      policy: { kind: "CiliumNetworkPolicy", name: "multi", namespace: "prod" },
      path: "spec.ingress[0]",
      deny: false,
      description: "first",
    });
    assert.deepEqual(
      r.rules[1]?.egressDeny.map((e) => [e.origin.path, e.origin.deny]),
      [
        ["specs[0].egressDeny[0]", true],
        ["specs[0].egressDeny[1]", true],
      ],
    );
    assert.equal(r.rules[0]?.description, "first");
  });

  test("a rule with no elements at all does not switch on default deny", () => {
    assert.deepEqual(one(SPECS).rules[2]?.defaultDeny, { ingress: false, egress: false });
  });

  test("metadata.namespace defaults to default for a CNP", () => {
    const r = one(
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\nspec: {endpointSelector: {}}\n",
    );
    assert.deepEqual(r.ref, { kind: "CiliumNetworkPolicy", name: "x", namespace: "default" });
    assert.equal(r.rules[0]?.subject.toString(), "k8s:io.kubernetes.pod.namespace=default");
  });

  test("a CCNP ref has no namespace", () => {
    assert.deepEqual(one(ccnp("endpointSelector: {}")).ref, {
      kind: "CiliumClusterwideNetworkPolicy",
      name: "cw",
    });
  });

  test("the audit annotation sets audit; other metadata and status are ignored", () => {
    const r = one(
      cnp(
        "endpointSelector: {}",
        `annotations: {policy.membrane.io/audit: "true", other: x}
labels: {team: a}
uid: 0b6c5a2e
resourceVersion: "12"
generation: 3
creationTimestamp: "2024-01-01T00:00:00Z"
`,
      ) + "status:\n  conditions: []\n",
    );
    assert.equal(r.audit, true);
    assert.equal(one(cnp("endpointSelector: {}")).audit, false);
  });

  test("source records file and first line of the document", () => {
    const text = "---\n# leading comment\n" + cnp("endpointSelector: {}");
    assert.deepEqual(one(text).source, { file: "t.yaml", line: 3 });
  });

  test("multi-document file: every kind, trailing --- and empty documents skipped", () => {
    const text = `${cnp("endpointSelector: {}")}---\n${ccnp("endpointSelector: {}")}---\n${knp("podSelector: {}")}---\n---\n`;
    const r = parsePolicies(text, "t.yaml");
    assert.deepEqual(
      r.map((p) => p.ref.kind),
      ["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy"],
    );
  });

  test("an empty file gives no policies", () => {
    assert.deepEqual(parsePolicies("", "t.yaml"), []);
    assert.deepEqual(parsePolicies("# nothing\n---\n", "t.yaml"), []);
  });

  test("kind: List items are read like documents, paths start at items[i]", () => {
    const text = `apiVersion: v1
kind: List
items:
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: a, namespace: ns1}
  spec:
    endpointSelector: {}
    ingress:
    - fromEntities: [host]
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: b, namespace: ns1}
  spec: {podSelector: {}}
`;
    const r: PolicyResource[] = parsePolicies(text, "t.yaml");
    assert.deepEqual(
      r.map((p) => p.ref.name),
      ["a", "b"],
    );
    assert.equal(r[0]?.rules[0]?.ingress[0]?.origin.path, "spec.ingress[0]");
    const e = reject(text.replace("[host]", "[hots]"));
    assert.equal(e.issues[0]?.path, "items[0].spec.ingress[0].fromEntities[0]");
    assert.equal(e.issues[0]?.line, 10);
  });

  test("multi-document file with one bad document is rejected whole, naming only the bad document", () => {
    const text = `${cnp("endpointSelector: {}")}---\n${cnp("endpointSelector: {}\ningress:\n- fromEntities: [moon]")}`;
    const e = reject(text);
    assert.equal(e.code, "POLICY_INVALID");
    assert.equal(e.message, "Cannot apply t.yaml: 1 problem in 1 of 2 documents");
    assert.deepEqual(e.issues, [
      {
        file: "t.yaml",
        line: 17,
        path: "spec.ingress[0].fromEntities[0]",
        message:
          'unknown entity "moon"; known entities: all, world, world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver, init, health, unmanaged, ingress, none',
      },
    ]);
  });

  test("every problem of every document is listed and describe() prints file:line: path: message", () => {
    const text = `${cnp("endpointSelector: {}\nfoo: 1")}---\n${cnp("endpointSelector: {}\negress:\n- toPorts: [{ports: [{port: 70000}]}]")}`;
    const e = reject(text);
    assert.equal(e.message, "Cannot apply t.yaml: 2 problems in 2 of 2 documents");
    assert.equal(
      e.describe(),
      [
        "Cannot apply t.yaml: 2 problems in 2 of 2 documents",
        '  t.yaml:8: spec.foo: unknown field "foo"',
        "  t.yaml:18: spec.egress[0].toPorts[0].ports[0].port: port 70000 is out of range 0-65535 (0 means all ports)",
        "hint: nothing from this file was applied; fix every problem listed above and apply the file again",
      ].join("\n"),
    );
  });

  test("YAML syntax errors give POLICY_YAML_SYNTAX with the line", () => {
    const e = reject("apiVersion: cilium.io/v2\nkind: [CiliumNetworkPolicy\nmetadata: {name: x}\n");
    assert.equal(e.code, "POLICY_YAML_SYNTAX");
    assert.match(e.message, /^Cannot apply t\.yaml: \d+ YAML syntax errors?$/);
    assert.ok(e.issues.length >= 1);
    assert.match(e.issues[0]?.message ?? "", /^YAML syntax: /);
  });

  test("duplicate keys are a YAML error at the duplicate's line", () => {
    const e = reject("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nkind: NetworkPolicy\n");
    assert.equal(e.code, "POLICY_YAML_SYNTAX");
    assert.equal(e.issues[0]?.line, 3);
    assert.match(e.issues[0]?.message ?? "", /unique/);
  });

  test("a file whose only problems are unsupported fields gives POLICY_UNSUPPORTED", () => {
    const e = reject(cnp("endpointSelector: {}\ningress:\n- fromGroups: [{aws: {labels: {a: b}}}]"));
    assert.equal(e.code, "POLICY_UNSUPPORTED");
    assert.match(e.issues[0]?.message ?? "", /fromGroups is not supported by Membrane yet/);
  });

  test("unsupported and invalid together give POLICY_INVALID", () => {
    const e = reject(
      cnp("endpointSelector: {}\ningressDeny:\n- fromGroups: [{aws: {labels: {a: b}}}]\n- fromEntities: [x]"),
    );
    assert.equal(e.code, "POLICY_INVALID");
    assert.equal(e.issues.length, 2);
  });

  test("YAML anchors and aliases are followed", () => {
    const text = cnp(`
endpointSelector: &sel {matchLabels: {app: a}}
ingress:
- fromEndpoints: [*sel]
`);
    assert.equal(one(text).rules[0]?.ingress[0]?.peers[0]?.kind, "endpoints");
  });
});
