import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ErrorCode } from "../../../src/errors.js";
import { ccnp, cnp, lineOf, reject } from "./helpers.js";

interface Case {
  name: string;
  doc: string;
  /** Field path of the (first) issue. */
  path: string;
  /** Text on the line the issue must point at. */
  at: string;
  message: string;
  code?: ErrorCode;
  meshAuth?: boolean;
}

/** A CNP whose spec is `endpointSelector: {}` plus `body`. */
const c = (body: string): string => cnp(`endpointSelector: {}\n${body}`);
const ing = (el: string): string => c(`ingress:\n${el}`);
const egr = (el: string): string => c(`egress:\n${el}`);
const tcp80 = 'ports: [{port: "80", protocol: TCP}]';

const cases: Case[] = [
  // ports
  {
    name: "port above 65535",
    doc: ing("- toPorts: [{ports: [{port: 65536}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].port",
    at: "65536",
    message: "port 65536 is out of range 0-65535",
  },
  {
    name: "negative port",
    doc: ing('- toPorts: [{ports: [{port: "-1"}]}]'),
    path: "spec.ingress[0].toPorts[0].ports[0].port",
    at: "-1",
    message: "port -1 is out of range",
  },
  {
    name: "port name with invalid characters",
    doc: ing('- toPorts: [{ports: [{port: "abc!"}]}]'),
    path: "spec.ingress[0].toPorts[0].ports[0].port",
    at: "abc!",
    message: '"abc!" is neither a port number (0-65535) nor a port name',
  },
  {
    name: "port name longer than 15 characters",
    doc: ing("- toPorts: [{ports: [{port: very-long-port-name}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].port",
    at: "very-long",
    message: "is neither a port number",
  },
  {
    name: "endPort below port",
    doc: ing("- toPorts: [{ports: [{port: 8080, endPort: 8000}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].endPort",
    at: "endPort",
    message: "endPort 8000 is below port 8080",
  },
  {
    name: "endPort above 65535",
    doc: ing("- toPorts: [{ports: [{port: 8080, endPort: 70000}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].endPort",
    at: "endPort",
    message: "must be between 0 and 65535, not 70000",
  },
  {
    name: "endPort with a named port",
    doc: ing("- toPorts: [{ports: [{port: http, endPort: 90}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].endPort",
    at: "endPort",
    message: "endPort cannot be used with a named port",
  },
  {
    name: "endPort with port 0",
    doc: ing('- toPorts: [{ports: [{port: "0", endPort: 90}]}]'),
    path: "spec.ingress[0].toPorts[0].ports[0].endPort",
    at: "endPort",
    message: "endPort cannot be used with port 0",
  },
  {
    name: "unknown protocol",
    doc: ing("- toPorts: [{ports: [{port: 80, protocol: QUIC}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].protocol",
    at: "QUIC",
    message: 'unknown protocol "QUIC"; use TCP, UDP, SCTP or ANY',
  },
  {
    name: "ICMP as a toPorts protocol points to icmps",
    doc: ing("- toPorts: [{ports: [{port: 0, protocol: ICMP}]}]"),
    path: "spec.ingress[0].toPorts[0].ports[0].protocol",
    at: "ICMP",
    message: 'protocol ICMP goes in "icmps"',
  },
  {
    name: "more than 40 ports in one port rule",
    doc: ing(
      `- toPorts: [{ports: [${Array.from({ length: 41 }, (_, i) => `{port: ${i + 1}}`).join(", ")}]}]`,
    ),
    path: "spec.ingress[0].toPorts[0].ports",
    at: "toPorts",
    message: "at most 40 ports per toPorts entry, got 41",
  },
  {
    name: "icmps and toPorts in one element",
    doc: ing("- toPorts: [{ports: [{port: 80}]}]\n  icmps: [{fields: [{type: 8}]}]"),
    path: "spec.ingress[0]",
    at: "- toPorts",
    message: "icmps and toPorts cannot be combined in one rule",
  },
  {
    name: "listener is not supported",
    doc: egr(`- toPorts: [{${tcp80}, listener: {envoyConfig: {name: x}, name: l}}]`),
    path: "spec.egress[0].toPorts[0].listener",
    at: "listener",
    message: "listener (CiliumEnvoyConfig redirect) is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  // L7
  {
    name: "invalid HTTP path regex reports the RE2 error",
    doc: ing(`- toPorts: [{${tcp80}, rules: {http: [{path: "/v1/(a"}]}}]`),
    path: "spec.ingress[0].toPorts[0].rules.http[0].path",
    at: "/v1/(a",
    message: 'invalid regular expression "/v1/(a": error parsing regexp: missing closing ): `/v1/(a`',
  },
  {
    name: "lookaround in an HTTP method regex is rejected (RE2 has none)",
    doc: ing(`- toPorts: [{${tcp80}, rules: {http: [{method: "(?!DELETE).*"}]}}]`),
    path: "spec.ingress[0].toPorts[0].rules.http[0].method",
    at: "DELETE",
    message: "invalid or unsupported Perl syntax",
  },
  {
    name: "backreference in an HTTP host regex is rejected",
    doc: ing(`- toPorts: [{${tcp80}, rules: {http: [{host: "(a)\\\\1"}]}}]`),
    path: "spec.ingress[0].toPorts[0].rules.http[0].host",
    at: "host:",
    message: "invalid escape sequence",
  },
  {
    name: "L7 rules on protocol ANY (the default) are rejected",
    doc: ing("- toPorts: [{ports: [{port: 80}], rules: {http: [{}]}}]"),
    path: "spec.ingress[0].toPorts[0].ports[0]",
    at: "- toPorts",
    message: "http rules need protocol: TCP (got ANY)",
  },
  {
    name: "L7 rules on port 0",
    doc: ing("- toPorts: [{ports: [{port: 0, protocol: TCP}], rules: {http: [{}]}}]"),
    path: "spec.ingress[0].toPorts[0].ports[0]",
    at: "- toPorts",
    message: "http rules cannot apply to port 0",
  },
  {
    name: "L7 rules on a port range",
    doc: ing("- toPorts: [{ports: [{port: 80, endPort: 90, protocol: TCP}], rules: {http: [{}]}}]"),
    path: "spec.ingress[0].toPorts[0].ports[0]",
    at: "- toPorts",
    message: "http rules cannot apply to a port range",
  },
  {
    name: "L7 rules without ports",
    doc: egr("- toPorts: [{rules: {http: [{}]}}]"),
    path: "spec.egress[0].toPorts[0]",
    at: "- toPorts",
    message: 'need at least one port in "ports"',
  },
  {
    name: "two kinds of L7 rules in one port rule",
    doc: egr(`- toPorts: [{${tcp80}, rules: {http: [{}], kafka: [{}]}}]`),
    path: "spec.egress[0].toPorts[0].rules",
    at: "- toPorts",
    message: "only one kind of L7 rules per port rule; found http and kafka",
  },
  {
    name: "l7proto is not supported",
    doc: egr(`- toPorts: [{${tcp80}, rules: {l7proto: r2d2, l7: [{cmd: READ}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.l7proto",
    at: "- toPorts",
    message: "l7proto (generic proxylib L7 parsers) is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  {
    name: "DNS rules on ingress",
    doc: ing('- toPorts: [{ports: [{port: 53, protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]'),
    path: "spec.ingress[0].toPorts[0].rules.dns",
    at: "- toPorts",
    message: "DNS rules are allowed on egress only",
  },
  {
    name: "DNS rules on SCTP",
    doc: egr("- toPorts: [{ports: [{port: 53, protocol: SCTP}], rules: {dns: [{matchName: a.com}]}}]"),
    path: "spec.egress[0].toPorts[0].ports[0]",
    at: "- toPorts",
    message: "DNS rules apply to protocol TCP, UDP or ANY, not SCTP",
  },
  {
    name: "DNS rule with an invalid name",
    doc: egr('- toPorts: [{ports: [{port: 53, protocol: UDP}], rules: {dns: [{matchName: "a b"}]}}]'),
    path: "spec.egress[0].toPorts[0].rules.dns[0].matchName",
    at: "- toPorts",
    message: "is not a valid DNS name",
  },
  {
    name: "L7 rules in a deny rule",
    doc: c(`ingressDeny:\n- toPorts: [{${tcp80}, rules: {http: [{}]}}]`),
    path: "spec.ingressDeny[0].toPorts[0].rules",
    at: "- toPorts",
    message: "rules is not allowed in deny rules",
  },
  {
    name: "serverNames in a deny rule",
    doc: c(`egressDeny:\n- toPorts: [{${tcp80}, serverNames: [a.com]}]`),
    path: "spec.egressDeny[0].toPorts[0].serverNames",
    at: "- toPorts",
    message: "serverNames is not allowed in deny rules",
  },
  {
    name: "L7 in a host policy (nodeSelector) other than DNS",
    doc: ccnp(`nodeSelector: {}\ningress:\n- toPorts: [{${tcp80}, rules: {http: [{}]}}]`),
    path: "spec.ingress[0].toPorts[0].rules",
    at: "- toPorts",
    message: "host policies (nodeSelector) support no L7 rules except DNS",
  },
  {
    name: "HTTP header that is not a token",
    doc: egr(`- toPorts: [{${tcp80}, rules: {http: [{headers: ["X:Bad:Header"]}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.http[0].headers[0]",
    at: "- toPorts",
    message: 'invalid header "X:Bad:Header"',
  },
  {
    name: "headerMatches without a name",
    doc: egr(`- toPorts: [{${tcp80}, rules: {http: [{headerMatches: [{value: x}]}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].name",
    at: "- toPorts",
    message: 'field "name" is required',
  },
  {
    name: "headerMatches with a secret is not supported",
    doc: egr(`- toPorts: [{${tcp80}, rules: {http: [{headerMatches: [{name: X, secret: {name: s}}]}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].secret",
    at: "- toPorts",
    message: "headerMatches[].secret is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  {
    name: "headerMatches mismatch LOG is not supported",
    doc: egr(`- toPorts: [{${tcp80}, rules: {http: [{headerMatches: [{name: X, mismatch: LOG}]}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch",
    at: "- toPorts",
    message: "headerMatches[].mismatch: LOG is not supported by Membrane yet",
    code: "POLICY_UNSUPPORTED",
  },
  {
    name: "Kafka role and apiKey together",
    doc: egr(`- toPorts: [{${tcp80}, rules: {kafka: [{role: produce, apiKey: fetch}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.kafka[0]",
    at: "- toPorts",
    message: "set either role or apiKey, not both",
  },
  {
    name: "Kafka unknown role",
    doc: egr(`- toPorts: [{${tcp80}, rules: {kafka: [{role: admin}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.kafka[0].role",
    at: "- toPorts",
    message: 'unknown Kafka role "admin"; use produce or consume',
  },
  {
    name: "Kafka unknown apiKey with suggestion",
    doc: egr(`- toPorts: [{${tcp80}, rules: {kafka: [{apiKey: createtopic}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.kafka[0].apiKey",
    at: "- toPorts",
    message: 'unknown Kafka apiKey "createtopic"; did you mean "createtopics"?',
  },
  {
    name: "Kafka apiVersion out of int16 range",
    doc: egr(`- toPorts: [{${tcp80}, rules: {kafka: [{apiVersion: "40000"}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.kafka[0].apiVersion",
    at: "- toPorts",
    message: "must be between 0 and 32767, not 40000",
  },
  {
    name: "Kafka topic with invalid characters",
    doc: egr(`- toPorts: [{${tcp80}, rules: {kafka: [{topic: "a/b"}]}}]`),
    path: "spec.egress[0].toPorts[0].rules.kafka[0].topic",
    at: "- toPorts",
    message: 'invalid Kafka topic "a/b"',
  },
  {
    name: "serverNames with L7 rules but without terminatingTLS",
    doc: egr(`- toPorts: [{${tcp80}, serverNames: [a.com], rules: {http: [{}]}}]`),
    path: "spec.egress[0].toPorts[0].serverNames",
    at: "- toPorts",
    message: "serverNames together with L7 rules needs terminatingTLS",
  },
  {
    name: "empty server name",
    doc: egr(`- toPorts: [{${tcp80}, serverNames: [""]}]`),
    path: "spec.egress[0].toPorts[0].serverNames[0]",
    at: "- toPorts",
    message: "an empty server name is not allowed",
  },
  {
    name: "TLS context without a secret name",
    doc: egr(`- toPorts: [{${tcp80}, originatingTLS: {secret: {namespace: a}}}]`),
    path: "spec.egress[0].toPorts[0].originatingTLS.secret.name",
    at: "- toPorts",
    message: 'field "name" is required',
  },
  // icmps
  {
    name: "ICMP type above 255",
    doc: ing("- icmps: [{fields: [{type: 256}]}]"),
    path: "spec.ingress[0].icmps[0].fields[0].type",
    at: "icmps",
    message: "must be between 0 and 255, not 256",
  },
  {
    name: "unknown ICMP type name with suggestion",
    doc: ing("- icmps: [{fields: [{type: EchoRequst}]}]"),
    path: "spec.ingress[0].icmps[0].fields[0].type",
    at: "icmps",
    message: 'unknown IPv4 ICMP type "EchoRequst"; did you mean "EchoRequest"?',
  },
  {
    name: "IPv6-only ICMP name under IPv4",
    doc: ing("- icmps: [{fields: [{type: NeighborSolicitation}]}]"),
    path: "spec.ingress[0].icmps[0].fields[0].type",
    at: "icmps",
    message: 'unknown IPv4 ICMP type "NeighborSolicitation"',
  },
  {
    name: "an ICMP type named like an object property is unknown, not a crash",
    doc: ing("- icmps: [{fields: [{type: constructor}]}]"),
    path: "spec.ingress[0].icmps[0].fields[0].type",
    at: "icmps",
    message: 'unknown IPv4 ICMP type "constructor"',
  },
  {
    name: "unknown ICMP family",
    doc: ing("- icmps: [{fields: [{family: IPv5, type: 8}]}]"),
    path: "spec.ingress[0].icmps[0].fields[0].family",
    at: "icmps",
    message: 'unknown ICMP family "IPv5"; use IPv4 or IPv6',
  },
  {
    name: "more than 40 ICMP fields",
    doc: ing(`- icmps: [{fields: [${Array.from({ length: 41 }, () => "{type: 8}").join(", ")}]}]`),
    path: "spec.ingress[0].icmps[0].fields",
    at: "icmps",
    message: "at most 40 ICMP fields per entry, got 41",
  },
  // authentication, default deny, log
  {
    name: "authentication required without meshAuth",
    doc: ing("- fromEntities: [cluster]\n  authentication: {mode: required}"),
    path: "spec.ingress[0].authentication.mode",
    at: "authentication",
    message: "mutual authentication is not enabled on this node (meshAuth)",
    code: "POLICY_UNSUPPORTED",
  },
  {
    name: "unknown authentication mode",
    meshAuth: true,
    doc: ing("- fromEntities: [cluster]\n  authentication: {mode: spiffe}"),
    path: "spec.ingress[0].authentication.mode",
    at: "authentication",
    message: 'unknown authentication mode "spiffe"',
  },
  {
    name: "authentication in a deny rule",
    doc: c("ingressDeny:\n- fromEntities: [world]\n  authentication: {mode: disabled}"),
    path: "spec.ingressDeny[0].authentication",
    at: "authentication",
    message: "authentication is not allowed in deny rules",
  },
  {
    name: "enableDefaultDeny must be a boolean",
    doc: c('enableDefaultDeny: {ingress: "no"}'),
    path: "spec.enableDefaultDeny.ingress",
    at: "enableDefaultDeny",
    message: "must be true or false, not a string",
  },
  {
    name: "log longer than 32 characters",
    doc: c(`log: ${"x".repeat(33)}`),
    path: "spec.log",
    at: "log:",
    message: "log must be at most 32 printable ASCII characters",
  },
];

describe("validation errors (ports, L7, ICMP, authentication) name file, line, path and reason", () => {
  for (const tc of cases) {
    test(tc.name, () => {
      const e = reject(tc.doc, tc.meshAuth ? { meshAuth: true } : {});
      assert.equal(e.code, tc.code ?? "POLICY_INVALID");
      const issue = e.issues[0];
      assert.ok(issue, "at least one issue");
      assert.deepEqual(
        { path: issue.path, line: issue.line, file: issue.file },
        { path: tc.path, line: lineOf(tc.doc, tc.at), file: "t.yaml" },
        e.describe(),
      );
      assert.ok(
        issue.message.includes(tc.message),
        `${JSON.stringify(issue.message)} should contain ${JSON.stringify(tc.message)}`,
      );
    });
  }
});
