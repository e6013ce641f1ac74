/**
 * `membrane apply|delete -f` sends a file to one controller, chosen by the
 * kinds of its documents; a file mixing a family with other kinds is refused
 * naming the file (it would be half applied otherwise).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileFamily } from "../../src/cli/commands/file-family.js";

const doc = (kind: string, apiVersion = "v1"): string =>
  `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata: {name: x}\n`;
const file = (...docs: string[]): string => docs.join("---\n");

describe("apply: the controller of a file", () => {
  const cases: { name: string; text: string; want: string }[] = [
    {
      name: "network policies",
      text: file(doc("CiliumNetworkPolicy", "cilium.io/v2"), doc("NetworkPolicy")),
      want: "policy",
    },
    { name: "tracing policies", text: file(doc("TracingPolicy", "cilium.io/v1alpha1")), want: "tracing" },
    {
      name: "Gateway API and Ingress",
      text: file(doc("Gateway", "gateway.networking.k8s.io/v1"), doc("Ingress")),
      want: "gateway",
    },
    {
      name: "Services and EndpointSlices",
      text: file(doc("Service"), doc("EndpointSlice", "discovery.k8s.io/v1")),
      want: "lb",
    },
    {
      name: "a file that does not parse goes to the policy parser (it names the line)",
      text: "kind: [\n",
      want: "policy",
    },
    {
      name: "an alias bomb is left to the policy parser (kinds are read without expanding aliases)",
      text: "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nkind: NetworkPolicy\n",
      want: "policy",
    },
    {
      name: "a broken document beside tracing policies is left to the tracing parser",
      text: file(doc("TracingPolicy"), "kind: [\n"),
      want: "tracing",
    },
  ];
  for (const c of cases) test(c.name, () => assert.equal(fileFamily(c.text, "f.yaml"), c.want));

  test("a file mixing a family with other kinds is refused, naming the file and the family", () => {
    for (const [text, what] of [
      [file(doc("TracingPolicy"), doc("CiliumNetworkPolicy")), /f\.yaml: it mixes TracingPolicy documents/],
      [file(doc("Service"), doc("HTTPRoute")), /f\.yaml: it mixes Gateway API \/ Ingress documents/],
      [
        file(doc("NetworkPolicy"), doc("EndpointSlice")),
        /f\.yaml: it mixes Service\/EndpointSlice documents/,
      ],
    ] as const)
      assert.throws(
        () => fileFamily(text, "f.yaml"),
        (e: Error & { code?: string }) => what.test(e.message) && e.code === "CLI_USAGE",
      );
  });
});
