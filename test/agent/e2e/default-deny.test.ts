/**
 * Default-deny switching and deny precedence through the agent, on real
 * packets (needs root). Each case applies one policy named "p" (replacing the
 * previous case's) and checks every connection of a fixed matrix.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const skip = rootSkipReason();

const cnp = (spec: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
${spec
  .trim()
  .split("\n")
  .map((l) => "  " + l)
  .join("\n")}
`;

/** Connections checked after every step: from -> to:port. */
const MATRIX = [
  ["a", "b", 80],
  ["a", "b", 81],
  ["c", "b", 80],
  ["c", "b", 81],
  ["b", "a", 80],
  ["b", "c", 80],
  ["a", "c", 80],
] as const;

const cases: { name: string; policy?: string; want: string[] }[] = [
  {
    name: "no policy: everything is open",
    want: ["a>b:80 ok", "a>b:81 ok", "c>b:80 ok", "c>b:81 ok", "b>a:80 ok", "b>c:80 ok", "a>c:80 ok"],
  },
  {
    name: "an ingress rule closes b's ingress only (b's egress stays open)",
    policy: cnp(`
endpointSelector: {matchLabels: {app: b}}
ingress:
- fromEndpoints: [{matchLabels: {app: c}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]`),
    want: [
      "a>b:80 timeout",
      "a>b:81 timeout",
      "c>b:80 ok",
      "c>b:81 timeout",
      "b>a:80 ok",
      "b>c:80 ok",
      "a>c:80 ok",
    ],
  },
  {
    name: "an egress rule closes b's egress only (b's ingress is open again)",
    policy: cnp(`
endpointSelector: {matchLabels: {app: b}}
egress:
- toEndpoints: [{matchLabels: {app: c}}]`),
    want: ["a>b:80 ok", "a>b:81 ok", "c>b:80 ok", "c>b:81 ok", "b>a:80 timeout", "b>c:80 ok", "a>c:80 ok"],
  },
  {
    name: "enableDefaultDeny false keeps b open except for deny rules",
    policy: cnp(`
endpointSelector: {matchLabels: {app: b}}
enableDefaultDeny: {ingress: false}
ingress:
- fromEndpoints: [{matchLabels: {app: c}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]
ingressDeny:
- fromEndpoints: [{matchLabels: {app: a}}]
  toPorts: [{ports: [{port: "81", protocol: TCP}]}]`),
    want: ["a>b:80 ok", "a>b:81 timeout", "c>b:80 ok", "c>b:81 ok", "b>a:80 ok", "b>c:80 ok", "a>c:80 ok"],
  },
  {
    name: "ingressDeny beats an allow of the same peer and port",
    policy: cnp(`
endpointSelector: {matchLabels: {app: b}}
ingress:
- fromEndpoints: [{}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]
ingressDeny:
- fromEndpoints: [{matchLabels: {app: a}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]`),
    want: [
      "a>b:80 timeout",
      "a>b:81 timeout",
      "c>b:80 ok",
      "c>b:81 timeout",
      "b>a:80 ok",
      "b>c:80 ok",
      "a>c:80 ok",
    ],
  },
  {
    name: "an L3 ingressDeny beats an allow of every entity on every port",
    policy: cnp(`
endpointSelector: {matchLabels: {app: b}}
ingress:
- fromEntities: [all]
ingressDeny:
- fromEndpoints: [{matchLabels: {app: a}}]`),
    want: [
      "a>b:80 timeout",
      "a>b:81 timeout",
      "c>b:80 ok",
      "c>b:81 ok",
      "b>a:80 ok",
      "b>c:80 ok",
      "a>c:80 ok",
    ],
  },
  {
    name: "a deny-only egress rule still switches a's egress to default deny (as Cilium)",
    policy: cnp(`
endpointSelector: {matchLabels: {app: a}}
egressDeny:
- toEndpoints: [{matchLabels: {app: b}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]`),
    want: [
      "a>b:80 timeout",
      "a>b:81 timeout",
      "c>b:80 ok",
      "c>b:81 ok",
      "b>a:80 ok",
      "b>c:80 ok",
      "a>c:80 timeout",
    ],
  },
  {
    name: "egressDeny on the client beats its own allow-all and the server's open ingress",
    policy: cnp(`
endpointSelector: {matchLabels: {app: a}}
egress:
- toEntities: [all]
egressDeny:
- toEndpoints: [{matchLabels: {app: b}}]
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]`),
    want: ["a>b:80 timeout", "a>b:81 ok", "c>b:80 ok", "c>b:81 ok", "b>a:80 ok", "b>c:80 ok", "a>c:80 ok"],
  },
];

describe("agent e2e: default deny and deny precedence (root)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  before(async () => {
    lab = await AgentLab.start("dd");
    for (const n of ["a", "b", "c"]) await lab.endpoint(n, { app: n }, { tcp: [80, 81] });
  });
  after(async () => {
    await lab?.destroy();
  });

  for (const c of cases) {
    test(c.name, async () => {
      if (c.policy) await lab.agent.applyPolicies(c.policy, "p.yaml");
      const got = await Promise.all(
        MATRIX.map(
          async ([from, to, port]) =>
            `${from}>${to}:${port} ${await lab.ep(from).probe.tcp(lab.ep(to).ip, port, T)}`,
        ),
      );
      assert.deepEqual(got, c.want);
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    });
  }
});
