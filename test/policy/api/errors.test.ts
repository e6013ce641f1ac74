import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../../src/errors.js";
import { parsePolicies } from "../../../src/policy/api/index.js";
import { didYouMean } from "../../../src/policy/api/suggest.js";
import { ccnp, cnp, egr, errorCases, ing, knp, specOf, tcp80, type ErrorCase } from "./helpers.js";

const cases: ErrorCase[] = [
  // unknown fields and structure
  {
    name: "unknown field with a did-you-mean suggestion",
    doc: ing("- fromEndpoint: [{}]"),
    path: "spec.ingress[0].fromEndpoint",
    at: "fromEndpoint:",
    message: 'unknown field "fromEndpoint"; did you mean "fromEndpoints"?',
  },
  {
    name: "an egress field in an ingress rule says where it belongs",
    doc: ing("- toEndpoints: [{}]"),
    path: "spec.ingress[0].toEndpoints",
    at: "toEndpoints",
    message:
      'unknown field "toEndpoints": toEndpoints belongs in egress rules; ingress rules use "fromEndpoints"',
  },
  {
    name: "unknown top-level spec field",
    doc: specOf("ingres: []"),
    path: "spec.ingres",
    at: "ingres:",
    message: 'did you mean "ingress"?',
  },
  {
    name: "unknown field in a selector",
    doc: cnp("endpointSelector: {matchLabel: {app: a}}"),
    path: "spec.endpointSelector.matchLabel",
    at: "matchLabel",
    message: 'did you mean "matchLabels"?',
  },
  {
    name: "wrong type: ingress must be a list",
    doc: specOf("ingress: {fromEntities: [world]}"),
    path: "spec.ingress",
    at: "ingress:",
    message: "must be a list, not a mapping",
  },
  {
    name: "neither spec nor specs",
    doc: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x}\n",
    path: "",
    at: "apiVersion",
    message: 'needs "spec" (one rule) or "specs"',
  },
  {
    name: "neither endpointSelector nor nodeSelector",
    doc: cnp("ingress: []"),
    path: "spec",
    at: "ingress: []",
    message: "give exactly one of endpointSelector or nodeSelector",
  },
  {
    name: "nodeSelector in a namespaced policy",
    doc: cnp("nodeSelector: {}"),
    path: "spec.nodeSelector",
    at: "nodeSelector",
    message: "nodeSelector is only allowed in a CiliumClusterwideNetworkPolicy",
  },
  {
    name: "unknown kind with suggestion",
    doc: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicies\nmetadata: {name: x}\n",
    path: "kind",
    at: "kind:",
    message: 'unsupported kind "CiliumNetworkPolicies"; did you mean "CiliumNetworkPolicy"?',
  },
  {
    name: "missing kind",
    doc: "apiVersion: cilium.io/v2\nmetadata: {name: x}\n",
    path: "",
    at: "apiVersion",
    message: 'field "kind" is required',
  },
  {
    name: "wrong apiVersion for the kind",
    doc: cnp("endpointSelector: {}").replace("cilium.io/v2", "cilium.io/v1"),
    path: "apiVersion",
    at: "apiVersion",
    message: 'apiVersion of a CiliumNetworkPolicy must be cilium.io/v2, not "cilium.io/v1"',
  },
  {
    name: "a document that is not a mapping",
    doc: "- just\n- a list\n",
    path: "",
    at: "- just",
    message: "a policy document must be a mapping",
  },
  // metadata
  {
    name: "metadata.name is required",
    doc: "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {namespace: a}\nspec: {endpointSelector: {}}\n",
    path: "metadata.name",
    at: "metadata:",
    message: 'field "name" is required',
  },
  {
    name: "metadata.name must be a DNS-1123 subdomain",
    doc: cnp("endpointSelector: {}").replace("name: p", "name: My_Policy"),
    path: "metadata.name",
    at: "name: My_Policy",
    message: '"My_Policy" is not a valid name',
  },
  {
    name: "metadata.namespace must be a DNS-1123 label",
    doc: cnp("endpointSelector: {}").replace("namespace: ns1", "namespace: a.b"),
    path: "metadata.namespace",
    at: "namespace: a.b",
    message: "is not a valid namespace name",
  },
  {
    name: "a description at the top level says it belongs under spec",
    doc: cnp("endpointSelector: {}").replace("spec:", 'description: "allow web"\nspec:'),
    path: "description",
    at: "description:",
    message:
      'unknown field "description"; description belongs under spec (spec.description, or specs[i].description)',
  },
  {
    name: "a description under metadata says it belongs under spec",
    doc: ccnp("endpointSelector: {}").replace("name: cw", 'name: cw\n  description: "allow web"'),
    path: "metadata.description",
    at: "description:",
    message: 'unknown field "description"; description belongs under spec',
  },
  {
    name: "a description in a NetworkPolicy's metadata points to annotations",
    doc: knp("podSelector: {}").replace("name: np", 'name: np\n  description: "allow web"'),
    path: "metadata.description",
    at: "description:",
    message: "a NetworkPolicy has no description; put it in metadata.annotations",
  },
  {
    name: "unknown metadata field",
    doc: cnp("endpointSelector: {}", "nmae: x\n"),
    path: "metadata.nmae",
    at: "nmae",
    message: 'did you mean "name"?',
  },
  {
    name: "audit annotation must be true or false",
    doc: cnp("endpointSelector: {}", 'annotations: {policy.membrane.io/audit: "yes"}\n'),
    path: 'metadata.annotations["policy.membrane.io/audit"]',
    at: "annotations",
    message: 'must be "true" or "false"',
  },
  // selectors
  {
    name: "invalid label key in a selector",
    doc: ing('- fromEndpoints: [{matchLabels: {"bad key": x}}]'),
    path: 'spec.ingress[0].fromEndpoints[0].matchLabels["bad key"]',
    at: "bad key",
    message: 'cannot use label key "bad key"',
  },
  {
    name: "unquoted number as a label value",
    doc: cnp("endpointSelector:\n  matchLabels:\n    version: 2"),
    path: "spec.endpointSelector.matchLabels.version",
    at: "version: 2",
    message: 'label values are strings; quote it: "2"',
  },
  {
    name: "unknown selector operator",
    doc: cnp("endpointSelector:\n  matchExpressions:\n  - {key: a, operator: Equals, values: [x]}"),
    path: "spec.endpointSelector.matchExpressions[0]",
    at: "operator: Equals",
    message: 'operator "Equals"',
  },
  {
    name: "In without values",
    doc: cnp("endpointSelector:\n  matchExpressions:\n  - {key: a, operator: In}"),
    path: "spec.endpointSelector.matchExpressions[0]",
    at: "operator: In",
    message: "without values",
  },
  // peers
  {
    name: "fromEndpoints and fromCIDR in one element",
    doc: ing("- fromEndpoints: [{}]\n  fromCIDR: [10.0.0.0/8]"),
    path: "spec.ingress[0]",
    at: "- fromEndpoints",
    message: "Combining fromEndpoints and fromCIDR in one rule is not supported by Cilium; use two rules",
  },
  {
    name: "toEntities and toServices in one element",
    doc: egr("- toEntities: [world]\n  toServices: [{k8sService: {serviceName: a}}]"),
    path: "spec.egress[0]",
    at: "- toEntities",
    message: "Combining toEntities and toServices in one rule",
  },
  {
    name: "toFQDNs combined with toCIDR",
    doc: egr("- toCIDR: [1.1.1.1]\n  toFQDNs: [{matchName: a.com}]"),
    path: "spec.egress[0]",
    at: "- toCIDR",
    message: "Combining toCIDR and toFQDNs",
  },
  {
    name: "unknown entity with suggestion",
    doc: egr("- toEntities: [kube-api-server]"),
    path: "spec.egress[0].toEntities[0]",
    at: "toEntities",
    message: 'unknown entity "kube-api-server"; did you mean "kube-apiserver"?',
  },
  {
    name: "invalid CIDR prefix length",
    doc: egr("- toCIDR: [10.0.0.0/33]"),
    path: "spec.egress[0].toCIDR[0]",
    at: "toCIDR",
    message: 'invalid CIDR "10.0.0.0/33"',
  },
  {
    name: "not an address at all",
    doc: ing('- fromCIDR: ["10.0.0"]'),
    path: "spec.ingress[0].fromCIDR[0]",
    at: "fromCIDR",
    message: 'invalid CIDR "10.0.0"',
  },
  {
    name: "CIDRSet cidr must be a prefix, not a bare address",
    doc: egr("- toCIDRSet: [{cidr: 10.1.2.3}]"),
    path: "spec.egress[0].toCIDRSet[0].cidr",
    at: "toCIDRSet",
    message: "write a prefix",
  },
  {
    name: "except outside the cidr",
    doc: egr("- toCIDRSet:\n  - cidr: 10.0.0.0/16\n    except: [10.1.0.0/24]"),
    path: "spec.egress[0].toCIDRSet[0].except[0]",
    at: "except:",
    message: "except 10.1.0.0/24 is not inside cidr 10.0.0.0/16",
  },
  {
    name: "except of another family",
    doc: egr('- toCIDRSet:\n  - cidr: 10.0.0.0/8\n    except: ["fd00::/8"]'),
    path: "spec.egress[0].toCIDRSet[0].except[0]",
    at: "except:",
    message: "is not inside cidr",
  },
  {
    name: "cidrGroupRef is not supported",
    doc: egr("- toCIDRSet: [{cidrGroupRef: corp}]"),
    path: "spec.egress[0].toCIDRSet[0].cidrGroupRef",
    at: "cidrGroupRef",
    message: "cidrGroupRef is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  {
    name: "toFQDNs matchName with a wildcard",
    doc: egr('- toFQDNs: [{matchName: "*.example.com"}]'),
    path: "spec.egress[0].toFQDNs[0].matchName",
    at: "toFQDNs",
    message: "use matchPattern",
  },
  {
    name: "toFQDNs pattern with invalid characters",
    doc: egr('- toFQDNs: [{matchPattern: "exa mple.com"}]'),
    path: "spec.egress[0].toFQDNs[0].matchPattern",
    at: "toFQDNs",
    message: "is not a valid pattern",
  },
  {
    name: "toFQDNs longer than 255 characters",
    doc: egr(`- toFQDNs: [{matchName: ${"a".repeat(256)}}]`),
    path: "spec.egress[0].toFQDNs[0].matchName",
    at: "toFQDNs",
    message: "at most 255 characters",
  },
  {
    name: "toFQDNs with both matchName and matchPattern",
    doc: egr('- toFQDNs: [{matchName: a.com, matchPattern: "*.a.com"}]'),
    path: "spec.egress[0].toFQDNs[0]",
    at: "toFQDNs",
    message: "give exactly one of matchName or matchPattern",
  },
  {
    name: "toFQDNs in a deny rule",
    doc: specOf("egressDeny:\n- toFQDNs: [{matchName: a.com}]"),
    path: "spec.egressDeny[0].toFQDNs",
    at: "toFQDNs",
    message: "toFQDNs is not allowed in deny rules",
  },
  {
    name: "toServices together with toPorts",
    doc: egr(`- toServices: [{k8sService: {serviceName: db}}]\n  toPorts: [{${tcp80}}]`),
    path: "spec.egress[0]",
    at: "- toServices",
    message: "toServices and toPorts cannot be combined in one rule",
  },
  {
    name: "toServices in a CCNP must name the namespace",
    doc: ccnp("endpointSelector: {}\negress:\n- toServices: [{k8sService: {serviceName: db}}]"),
    path: "spec.egress[0].toServices[0].k8sService",
    at: "toServices",
    message: "a clusterwide policy must name the service's namespace",
  },
  {
    name: "fromNodes is not supported",
    doc: ing("- fromNodes: [{matchLabels: {a: b}}]"),
    path: "spec.ingress[0].fromNodes",
    at: "fromNodes",
    message: "fromNodes is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  {
    name: "toGroups is not supported",
    doc: egr("- toGroups: [{aws: {securityGroupsIds: [sg-1]}}]"),
    path: "spec.egress[0].toGroups",
    at: "toGroups",
    message: "toGroups is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  // NetworkPolicy
  {
    name: "NetworkPolicy port 0 (omit the port for all ports)",
    doc: knp("podSelector: {}\ningress:\n- ports: [{port: 0}]"),
    path: "spec.ingress[0].ports[0].port",
    at: "ports:",
    message: "port 0 is out of range 1-65535 (omit the port to allow all ports)",
  },
  {
    name: "NetworkPolicy unknown protocol",
    doc: knp("podSelector: {}\ningress:\n- ports: [{protocol: tcp, port: 80}]"),
    path: "spec.ingress[0].ports[0].protocol",
    at: "ports:",
    message: 'unknown protocol "tcp"; NetworkPolicy allows TCP, UDP or SCTP',
  },
  {
    name: "NetworkPolicy endPort below port",
    doc: knp("podSelector: {}\negress:\n- ports: [{port: 9000, endPort: 100}]"),
    path: "spec.egress[0].ports[0].endPort",
    at: "ports:",
    message: "endPort 100 is below port 9000",
  },
  {
    name: "NetworkPolicy endPort with a named port",
    doc: knp("podSelector: {}\negress:\n- ports: [{port: dns, endPort: 100}]"),
    path: "spec.egress[0].ports[0].endPort",
    at: "ports:",
    message: "endPort needs a numeric port",
  },
  {
    name: "NetworkPolicy ipBlock with a podSelector in the same peer",
    doc: knp("podSelector: {}\ningress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8}\n    podSelector: {}"),
    path: "spec.ingress[0].from[0]",
    at: "ipBlock",
    message: "ipBlock cannot be combined with podSelector or namespaceSelector",
  },
  {
    name: "NetworkPolicy empty peer",
    doc: knp("podSelector: {}\ningress:\n- from:\n  - {}"),
    path: "spec.ingress[0].from[0]",
    at: "- {}",
    message: "a peer needs podSelector, namespaceSelector or ipBlock",
  },
  {
    name: "NetworkPolicy selector key with a Cilium source prefix",
    doc: knp('podSelector: {matchLabels: {"k8s:app": a}}'),
    path: "spec.podSelector",
    at: "podSelector",
    message: 'label key "k8s:app" has a source prefix',
  },
  {
    name: "NetworkPolicy unknown policy type",
    doc: knp("podSelector: {}\npolicyTypes: [ingress]"),
    path: "spec.policyTypes[0]",
    at: "policyTypes",
    message: 'unknown policy type "ingress"; use Ingress or Egress',
  },
  {
    name: "NetworkPolicy egress rules while policyTypes omits Egress",
    doc: knp("podSelector: {}\npolicyTypes: [Ingress]\negress:\n- {}"),
    path: "spec.policyTypes",
    at: "policyTypes",
    message: 'egress rules are given but policyTypes does not list "Egress"',
  },
  {
    name: "NetworkPolicy ipBlock except outside cidr",
    doc: knp("podSelector: {}\negress:\n- to:\n  - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}"),
    path: "spec.egress[0].to[0].ipBlock.except[0]",
    at: "ipBlock",
    message: "except 11.0.0.0/8 is not inside cidr 10.0.0.0/8",
  },
  {
    name: "NetworkPolicy unknown peer field with suggestion",
    doc: knp("podSelector: {}\ningress:\n- from:\n  - namespaceSelectors: {}"),
    path: "spec.ingress[0].from[0].namespaceSelectors",
    at: "namespaceSelectors",
    message: 'did you mean "namespaceSelector"?',
  },
];

errorCases(
  "validation errors (structure, metadata, selectors, peers, NetworkPolicy) name file, line, path and reason",
  cases,
);

describe("did-you-mean suggestions", () => {
  const sugg: { input: string; candidates: string[]; want: string | undefined }[] = [
    { input: "fromEndpoint", candidates: ["fromEndpoints", "fromEntities"], want: "fromEndpoints" },
    { input: "nmae", candidates: ["name", "namespace"], want: "name" },
    { input: "Ingress", candidates: ["ingress", "egress"], want: "ingress" },
    { input: "zzz", candidates: ["name"], want: undefined },
    { input: "wrld", candidates: ["world", "world-ipv4"], want: "world" },
  ];
  for (const s of sugg) {
    test(`"${s.input}" suggests ${String(s.want)}`, () =>
      assert.equal(didYouMean(s.input, s.candidates), s.want));
  }
});

describe("host policies", () => {
  test("a labelled nodeSelector is not supported yet (nodes carry no labels): rejected, not silently empty", () => {
    const text = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: hosts}
spec:
  nodeSelector: {matchLabels: {role: worker}}
  ingress: [{fromEntities: [world]}]
`;
    assert.throws(
      () => parsePolicies(text, "h.yaml"),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "POLICY_UNSUPPORTED" &&
        e.issues.some(
          (i) => i.path === "spec.nodeSelector" && i.line === 5 && /nodes carry no labels/.test(i.message),
        ),
    );
  });
});
