import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Rule } from "../../../src/policy/types.js";
import { ccnp, cnp, elemStr, rule } from "./helpers.js";

type Elem = ReturnType<typeof elemStr>;
interface Case {
  name: string;
  doc: string;
  opts?: { meshAuth?: boolean };
  subject?: string;
  selectsNodes?: boolean;
  ingress?: Elem[];
  egress?: Elem[];
  ingressDeny?: Elem[];
  egressDeny?: Elem[];
  defaultDeny?: { ingress: boolean; egress: boolean };
}

const NS = "k8s:io.kubernetes.pod.namespace=ns1";
const ANY_NS = "k8s:io.kubernetes.pod.namespace";

const cases: Case[] = [
  {
    name: "Star Wars rule1 (L3/L4): deathstar accepts empire ships on TCP/80, namespace injected on both sides",
    doc: cnp(`
description: "L3-L4 policy to restrict deathstar access to empire ships only"
endpointSelector:
  matchLabels: {org: empire, class: deathstar}
ingress:
- fromEndpoints:
  - matchLabels: {org: empire}
  toPorts:
  - ports:
    - port: "80"
      protocol: TCP
`),
    subject: `any:class=deathstar,any:org=empire,${NS}`,
    ingress: [{ peers: [`endpoints(any:org=empire,${NS})`], ports: ["TCP/80"] }],
    egress: [],
    defaultDeny: { ingress: true, egress: false },
  },
  {
    name: "CNP subject: a user namespace requirement is overwritten by the policy namespace",
    doc: cnp(`
endpointSelector:
  matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, app: x}
`),
    subject: `any:app=x,${NS}`,
    defaultDeny: { ingress: false, egress: false },
  },
  {
    name: "attack: NotIn on the namespace key cannot widen a CNP subject beyond its namespace",
    doc: cnp(`
endpointSelector:
  matchExpressions:
  - {key: io.kubernetes.pod.namespace, operator: NotIn, values: [ns1]}
`),
    subject: NS,
  },
  {
    name: "attack: DoesNotExist on the namespace key still gets the namespace injected",
    doc: cnp(`
endpointSelector:
  matchExpressions:
  - {key: "k8s:io.kubernetes.pod.namespace", operator: DoesNotExist}
  - {key: app, operator: NotIn, values: [a, b]}
`),
    subject: `any:app notin (a|b),${NS}`,
  },
  {
    name: "CCNP subject: no namespace injected; {} selects every endpoint",
    doc: ccnp(`endpointSelector: {}`),
    subject: "{}",
    selectsNodes: false,
  },
  {
    name: "CCNP nodeSelector {}: host policy for this node, no namespace",
    doc: ccnp(`
nodeSelector: {}
ingress:
- fromEntities: [remote-node]
`),
    subject: "{}",
    selectsNodes: true,
    ingress: [{ peers: ["entity(remote-node)"] }],
  },
  {
    name: "CNP fromEndpoints [{}] means every pod of the policy's own namespace",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints: [{}]
`),
    ingress: [{ peers: [`endpoints(${NS})`] }],
  },
  {
    name: "CNP peer with an explicit namespace keeps it (cross-namespace allow)",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints:
  - matchLabels: {"k8s:io.kubernetes.pod.namespace": other, app: a}
  - matchExpressions: [{key: io.kubernetes.pod.namespace, operator: Exists}]
`),
    ingress: [
      {
        peers: [
          "endpoints(any:app=a,k8s:io.kubernetes.pod.namespace=other)",
          "endpoints(any:io.kubernetes.pod.namespace)",
        ],
      },
    ],
  },
  {
    name: "CNP peer selecting on namespace labels is not narrowed to the policy namespace (Cilium >= 1.16)",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints:
  - matchLabels: {"io.cilium.k8s.namespace.labels.team": a, app: web}
  - matchExpressions: [{key: "k8s:io.cilium.k8s.namespace.labels.env", operator: In, values: [prod]}]
`),
    ingress: [
      {
        peers: [
          "endpoints(any:app=web,any:io.cilium.k8s.namespace.labels.team=a)",
          "endpoints(k8s:io.cilium.k8s.namespace.labels.env=prod)",
        ],
      },
    ],
  },
  {
    name: "CNP fromRequires on namespace labels is not narrowed to the policy namespace either",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints: [{}]
  fromRequires: [{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.env": prod}}]
`),
    ingress: [{ peers: [`endpoints(${NS})`], requires: ["k8s:io.cilium.k8s.namespace.labels.env In prod"] }],
  },
  {
    name: "CCNP peer on namespace labels still gets 'some namespace' (Exists)",
    doc: ccnp(`
endpointSelector: {}
egress:
- toEndpoints: [{matchLabels: {"io.cilium.k8s.namespace.labels.team": a}}]
`),
    egress: [{ peers: [`endpoints(any:io.cilium.k8s.namespace.labels.team=a,${ANY_NS})`] }],
    defaultDeny: { ingress: false, egress: true },
  },
  {
    name: "CNP peer with a reserved: key is not namespace-scoped",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints:
  - matchLabels: {"reserved:host": ""}
`),
    ingress: [{ peers: ["endpoints(reserved:host=)"] }],
  },
  {
    name: "CCNP peer {} gets 'some namespace' (Exists): pods only, never reserved identities",
    doc: ccnp(`
endpointSelector: {}
egress:
- toEndpoints: [{}, {matchLabels: {app: db}}]
`),
    egress: [{ peers: [`endpoints(${ANY_NS})`, `endpoints(any:app=db,${ANY_NS})`] }],
    defaultDeny: { ingress: false, egress: true },
  },
  {
    name: "CCNP peer with a reserved: key gets no namespace requirement",
    doc: ccnp(`
endpointSelector: {}
ingress:
- fromEndpoints: [{matchLabels: {"reserved:health": ""}}]
`),
    ingress: [{ peers: ["endpoints(reserved:health=)"] }],
  },
  {
    name: "fromEndpoints: [] (present, empty) selects nothing even with ports",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints: []
  toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`),
    ingress: [{ peers: [], ports: ["TCP/80"] }],
    defaultDeny: { ingress: true, egress: false },
  },
  {
    name: "an element with ports but no L3 field selects every peer (all)",
    doc: cnp(`
endpointSelector: {}
ingress:
- toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`),
    ingress: [{ peers: ["all"], ports: ["TCP/443"] }],
  },
  {
    name: "an element with icmps but no L3 field selects every peer",
    doc: cnp(`
endpointSelector: {}
egress:
- icmps: [{fields: [{type: 8}]}]
`),
    egress: [{ peers: ["all"], icmps: ["IPv4/8"] }],
  },
  {
    name: "an element {} selects nothing but still switches on default deny",
    doc: cnp(`
endpointSelector: {}
ingress:
- {}
`),
    ingress: [{ peers: [] }],
    defaultDeny: { ingress: true, egress: false },
  },
  {
    name: "fromRequires becomes namespace-scoped requirements and grants no peers",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromRequires:
  - matchLabels: {env: prod}
`),
    ingress: [{ peers: [], requires: ["any:env In prod", "k8s:io.kubernetes.pod.namespace In ns1"] }],
  },
  {
    name: "fromRequires combined with fromEndpoints in one element is accepted",
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints: [{matchLabels: {app: a}}]
  fromRequires: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": ns1, env: prod}}]
`),
    ingress: [
      {
        peers: [`endpoints(any:app=a,${NS})`],
        requires: ["any:env In prod", "k8s:io.kubernetes.pod.namespace In ns1"],
      },
    ],
  },
  {
    name: "CCNP toRequires gets the namespace Exists requirement",
    doc: ccnp(`
endpointSelector: {}
egress:
- toRequires: [{matchLabels: {zone: a}}]
`),
    egress: [{ peers: [], requires: ["any:zone In a", "k8s:io.kubernetes.pod.namespace Exists"] }],
  },
  {
    name: "entities are kept as entity peers, never namespace-scoped",
    doc: cnp(`
endpointSelector: {}
egress:
- toEntities: [world, kube-apiserver, cluster]
`),
    egress: [{ peers: ["entity(world)", "entity(kube-apiserver)", "entity(cluster)"] }],
  },
  {
    name: "toCIDR accepts prefixes and bare addresses (/32, /128); host bits are cleared",
    doc: cnp(`
endpointSelector: {}
egress:
- toCIDR: [10.0.0.0/8, 192.0.2.7, "2001:db8::1", 172.16.5.4/16]
`),
    egress: [
      { peers: ["cidr(10.0.0.0/8)", "cidr(192.0.2.7/32)", "cidr(2001:db8::1/128)", "cidr(172.16.0.0/16)"] },
    ],
  },
  {
    name: "toCIDRSet with except inside the cidr",
    doc: cnp(`
endpointSelector: {}
egress:
- toCIDRSet:
  - cidr: 10.0.0.0/8
    except: [10.96.0.0/12, 10.1.2.0/24]
  - cidr: "2001:db8::/32"
`),
    egress: [{ peers: ["cidr(10.0.0.0/8 except 10.96.0.0/12 except 10.1.2.0/24)", "cidr(2001:db8::/32)"] }],
  },
  {
    name: "toFQDNs names are lower-cased with a trailing dot; patterns keep * and **.",
    doc: cnp(`
endpointSelector: {}
egress:
- toFQDNs:
  - matchName: API.GitHub.com
  - matchPattern: "*.cilium.io"
  - matchPattern: "**.example.org."
  toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`),
    egress: [
      {
        peers: ["fqdn(name=api.github.com.)", "fqdn(pattern=*.cilium.io.)", "fqdn(pattern=**.example.org.)"],
        ports: ["TCP/443"],
      },
    ],
  },
  {
    name: "toServices by name defaults to the policy namespace; by selector keeps its namespace",
    doc: cnp(`
endpointSelector: {}
egress:
- toServices:
  - k8sService: {serviceName: db}
  - k8sService: {serviceName: cache, namespace: infra}
  - k8sServiceSelector: {selector: {matchLabels: {tier: be}}, namespace: ns2}
`),
    egress: [{ peers: ["service(ns1/db)", "service(infra/cache)", "service(ns2/any:tier=be)"] }],
  },
  {
    name: "deny elements: L3 deny and L4 deny with icmps",
    doc: cnp(`
endpointSelector: {}
ingressDeny:
- fromEntities: [world]
egressDeny:
- toCIDR: [192.0.2.0/24]
  toPorts: [{ports: [{port: "22", protocol: TCP}]}]
- icmps: [{fields: [{family: IPv6, type: EchoRequest}]}]
`),
    ingressDeny: [{ peers: ["entity(world)"] }],
    egressDeny: [
      { peers: ["cidr(192.0.2.0/24)"], ports: ["TCP/22"] },
      { peers: ["all"], icmps: ["IPv6/128"] },
    ],
    defaultDeny: { ingress: true, egress: true },
  },
  {
    name: "enableDefaultDeny false keeps allow rules but does not switch default deny on",
    doc: cnp(`
endpointSelector: {}
enableDefaultDeny: {ingress: false}
ingress:
- fromEntities: [cluster]
egress:
- toEntities: [world]
`),
    defaultDeny: { ingress: false, egress: true },
  },
  {
    name: "enableDefaultDeny true does not switch on a direction without elements",
    doc: cnp(`
endpointSelector: {}
enableDefaultDeny: {ingress: true, egress: true}
ingress:
- fromEntities: [cluster]
`),
    defaultDeny: { ingress: true, egress: false },
  },
  {
    name: "ingress: [] and egress: [] leave both directions default-allow",
    doc: cnp(`
endpointSelector: {}
ingress: []
egress: []
`),
    ingress: [],
    egress: [],
    defaultDeny: { ingress: false, egress: false },
  },
  {
    name: "authentication required is kept when meshAuth is enabled",
    opts: { meshAuth: true },
    doc: cnp(`
endpointSelector: {}
ingress:
- fromEndpoints: [{matchLabels: {app: a}}]
  authentication: {mode: required}
`),
    ingress: [{ peers: [`endpoints(any:app=a,${NS})`], auth: "required" }],
  },
  {
    name: "authentication disabled is accepted without meshAuth",
    doc: cnp(`
endpointSelector: {}
egress:
- toEntities: [world]
  authentication: {mode: disabled}
`),
    egress: [{ peers: ["entity(world)"], auth: "disabled" }],
  },
  {
    name: "description, labels and log are accepted and not interpreted",
    doc: cnp(`
endpointSelector: {}
description: allow dns
labels: [{key: team, value: a, source: k8s}]
log: {value: dns-allow}
egress:
- toEntities: [all]
`),
    egress: [{ peers: ["entity(all)"] }],
  },
];

function check(c: Case, r: Rule): void {
  if (c.subject !== undefined) assert.equal(r.subject.toString(), c.subject);
  if (c.selectsNodes !== undefined) assert.equal(r.selectsNodes, c.selectsNodes);
  for (const dir of ["ingress", "egress", "ingressDeny", "egressDeny"] as const) {
    const want = c[dir];
    if (want !== undefined) assert.deepEqual(r[dir].map(elemStr), want, dir);
  }
  if (c.defaultDeny) assert.deepEqual(r.defaultDeny, c.defaultDeny);
}

describe("CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy normalisation", () => {
  for (const c of cases) test(c.name, () => check(c, rule(c.doc, c.opts)));
});
