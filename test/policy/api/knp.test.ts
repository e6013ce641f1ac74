import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Rule } from "../../../src/policy/types.js";
import { elemStr, knp, rule } from "./helpers.js";

type Elem = ReturnType<typeof elemStr>;
interface Case {
  name: string;
  spec: string;
  subject?: string;
  ingress?: Elem[];
  egress?: Elem[];
  origins?: string[];
  defaultDeny?: { ingress: boolean; egress: boolean };
}

const NS = "k8s:io.kubernetes.pod.namespace=ns1";
const NSL = "k8s:io.cilium.k8s.namespace.labels.";

const cases: Case[] = [
  {
    name: "podSelector {} with no rules and no policyTypes: deny all ingress",
    spec: "podSelector: {}",
    subject: NS,
    ingress: [{ peers: [] }],
    egress: [],
    origins: ["spec.ingress"],
    defaultDeny: { ingress: true, egress: false },
  },
  {
    name: "subject podSelector keys get source k8s and the namespace",
    spec: "podSelector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [a, b]}]}",
    subject: `k8s:app=web,${NS},k8s:tier in (a|b)`,
  },
  {
    name: "policyTypes [Egress] without egress rules: deny all egress, ingress untouched",
    spec: "podSelector: {}\npolicyTypes: [Egress]",
    ingress: [],
    egress: [{ peers: [] }],
    origins: ["spec.policyTypes"],
    defaultDeny: { ingress: false, egress: true },
  },
  {
    name: "policyTypes [Ingress, Egress] without rules: deny all both ways",
    spec: "podSelector: {}\npolicyTypes: [Ingress, Egress]",
    ingress: [{ peers: [] }],
    egress: [{ peers: [] }],
    defaultDeny: { ingress: true, egress: true },
  },
  {
    name: "egress rules without policyTypes imply Egress and Ingress: ingress denied, egress as written",
    spec: "podSelector: {}\negress:\n- to: [{ipBlock: {cidr: 10.0.0.0/8}}]",
    ingress: [{ peers: [] }],
    egress: [{ peers: ["cidr(10.0.0.0/8)"] }],
    defaultDeny: { ingress: true, egress: true },
  },
  {
    name: "an ingress rule with no from allows every peer on its ports",
    spec: "podSelector: {}\ningress:\n- ports: [{port: 80}]",
    ingress: [{ peers: ["all"], ports: ["TCP/80"] }],
    origins: ["spec.ingress[0]"],
  },
  {
    name: "an empty ingress rule {} allows everything (all peers, all ports)",
    spec: "podSelector: {}\ningress:\n- {}",
    ingress: [{ peers: ["all"] }],
  },
  {
    name: "from: [] is the same as no from: all peers",
    spec: "podSelector: {}\ningress:\n- from: []\n  ports: [{port: 53, protocol: UDP}]",
    ingress: [{ peers: ["all"], ports: ["UDP/53"] }],
  },
  {
    name: "each from peer becomes its own element with the rule's ports copied",
    spec: `podSelector: {}
ingress:
- from:
  - podSelector: {matchLabels: {app: a}}
  - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}
  ports:
  - port: 8080
  - {protocol: UDP, port: 9000, endPort: 9100}`,
    ingress: [
      { peers: [`endpoints(k8s:app=a,${NS})`], ports: ["TCP/8080", "UDP/9000-9100"] },
      { peers: ["cidr(192.0.2.0/24 except 192.0.2.128/25)"], ports: ["TCP/8080", "UDP/9000-9100"] },
    ],
    origins: ["spec.ingress[0].from[0]", "spec.ingress[0].from[1]"],
  },
  {
    name: "namespaceSelector keys are rewritten to namespace labels, no pod namespace added",
    spec: `podSelector: {}
ingress:
- from:
  - namespaceSelector:
      matchLabels: {team: a}
      matchExpressions: [{key: env, operator: NotIn, values: [dev]}]`,
    ingress: [{ peers: [`endpoints(${NSL}env notin (dev),${NSL}team=a)`] }],
  },
  {
    name: "empty namespaceSelector means every pod in every namespace (Exists)",
    spec: "podSelector: {}\negress:\n- to: [{namespaceSelector: {}}]",
    egress: [{ peers: ["endpoints(k8s:io.kubernetes.pod.namespace)"] }],
  },
  {
    name: "podSelector and namespaceSelector in one peer are ANDed",
    spec: `podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: mon}}
    podSelector: {matchLabels: {app: prom}}`,
    ingress: [{ peers: [`endpoints(k8s:app=prom,${NSL}kubernetes.io/metadata.name=mon)`] }],
  },
  {
    name: "podSelector {} with empty namespaceSelector: all pods of all namespaces",
    spec: "podSelector: {}\ningress:\n- from: [{podSelector: {}, namespaceSelector: {}}]",
    ingress: [{ peers: ["endpoints(k8s:io.kubernetes.pod.namespace)"] }],
  },
  {
    name: "attack: a podSelector-only peer naming another namespace stays inside the policy namespace",
    spec: `podSelector: {}
ingress:
- from:
  - podSelector: {matchExpressions: [{key: io.kubernetes.pod.namespace, operator: NotIn, values: [ns1]}]}`,
    ingress: [{ peers: [`endpoints(k8s:io.kubernetes.pod.namespace notin (ns1),${NS})`] }],
  },
  {
    name: "ports: protocol defaults to TCP, port omitted means all ports, named ports lower-cased",
    spec: "podSelector: {}\negress:\n- ports: [{protocol: UDP}, {port: HTTP-Alt}, {protocol: SCTP, port: 3868}]",
    egress: [{ peers: ["all"], ports: ["UDP/0", "TCP/http-alt", "SCTP/3868"] }],
  },
  {
    name: "ports: [] means all ports (L3 only)",
    spec: "podSelector: {}\negress:\n- to: [{podSelector: {}}]\n  ports: []",
    egress: [{ peers: [`endpoints(${NS})`] }],
  },
  {
    name: "egress rules with policyTypes [Ingress, Egress] and no ingress rules",
    spec: 'podSelector: {}\npolicyTypes: [Ingress, Egress]\negress:\n- to: [{ipBlock: {cidr: "::/0"}}]',
    ingress: [{ peers: [] }],
    egress: [{ peers: ["cidr(::/0)"] }],
  },
];

function check(c: Case, r: Rule): void {
  if (c.subject !== undefined) assert.equal(r.subject.toString(), c.subject);
  if (c.ingress) assert.deepEqual(r.ingress.map(elemStr), c.ingress);
  if (c.egress) assert.deepEqual(r.egress.map(elemStr), c.egress);
  if (c.origins)
    assert.deepEqual(
      [...r.ingress, ...r.egress].map((e) => e.origin.path),
      c.origins,
    );
  if (c.defaultDeny) assert.deepEqual(r.defaultDeny, c.defaultDeny);
  assert.deepEqual([r.ingressDeny, r.egressDeny, r.selectsNodes, r.path], [[], [], false, "spec"]);
}

describe("Kubernetes NetworkPolicy translation (semantics §9)", () => {
  for (const c of cases) test(c.name, () => check(c, rule(knp(c.spec))));
  test("the ref names the NetworkPolicy and its namespace", () => {
    assert.deepEqual(rule(knp("podSelector: {}")).policy, {
      kind: "NetworkPolicy",
      name: "np",
      namespace: "ns1",
    });
  });
});
