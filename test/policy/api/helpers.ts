/** Shared helpers for policy/api tests: YAML builders and readable renderings of the normalised form. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError, type ErrorCode, type MembraneError } from "../../../src/errors.js";
import { prefixString } from "../../../src/labels/cidr.js";
import { parsePolicies } from "../../../src/policy/api/index.js";
import type { PeerSelector, PolicyResource, PortRule, Rule, RuleElement } from "../../../src/policy/types.js";

export function indent(text: string, n: number): string {
  const pad = " ".repeat(n);
  return text
    .replace(/^\n/, "")
    .split("\n")
    .map((l) => (l.trim() === "" ? l : pad + l))
    .join("\n");
}

/** A CNP in namespace ns1 named p with `spec` as given (unindented YAML). */
export function cnp(spec: string, meta = ""): string {
  return `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: ns1\n${indent(meta, 2)}spec:\n${indent(spec, 2)}\n`;
}

export function ccnp(spec: string): string {
  return `apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: cw\nspec:\n${indent(spec, 2)}\n`;
}

export function knp(spec: string): string {
  return `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n  namespace: ns1\nspec:\n${indent(spec, 2)}\n`;
}

export function one(text: string, opts: { meshAuth?: boolean } = {}): PolicyResource {
  const r = parsePolicies(text, "t.yaml", opts);
  assert.equal(r.length, 1);
  return r[0] as PolicyResource;
}

export function rule(text: string, opts: { meshAuth?: boolean } = {}): Rule {
  const rules = one(text, opts).rules;
  assert.equal(rules.length, 1);
  return rules[0] as Rule;
}

export function peerStr(p: PeerSelector): string {
  switch (p.kind) {
    case "endpoints":
      return `endpoints(${p.selector.toString()})`;
    case "entity":
      return `entity(${p.entity})`;
    case "cidr":
      return `cidr(${prefixString(p.prefix)}${p.except.map((e) => " except " + prefixString(e)).join("")})`;
    case "fqdn":
      return p.matchName !== undefined
        ? `fqdn(name=${p.matchName})`
        : `fqdn(pattern=${p.matchPattern ?? ""})`;
    case "service":
      return `service(${p.namespace}/${p.name ?? p.selector?.toString() ?? ""})`;
    case "nodes":
      return `nodes(${p.selector.toString()})`;
    case "all":
      return "all";
  }
}

export function portsStr(rules: readonly PortRule[] | undefined): string[] | undefined {
  return rules?.map((r) =>
    r.ports
      .map(
        (p) =>
          `${p.protocol}/${p.name ?? (p.endPort !== p.port ? `${p.port}-${p.endPort}` : String(p.port))}`,
      )
      .join(","),
  );
}

/** One element in a compact, exact form. */
export function elemStr(e: RuleElement): {
  peers: string[];
  requires?: string[];
  ports?: string[];
  icmps?: string[];
  auth?: string;
} {
  return {
    peers: e.peers.map(peerStr),
    ...(e.requires.length
      ? { requires: e.requires.map((r) => `${r.source}:${r.key} ${r.operator} ${r.values.join("|")}`.trim()) }
      : {}),
    ...(e.ports ? { ports: portsStr(e.ports) as string[] } : {}),
    ...(e.icmps ? { icmps: e.icmps.map((i) => `${i.family}/${i.type}`) } : {}),
    ...(e.auth ? { auth: e.auth } : {}),
  };
}

/** Parses text expecting a rejection; returns the error. */
export function reject(text: string, opts: { meshAuth?: boolean } = {}): MembraneError {
  try {
    parsePolicies(text, "t.yaml", opts);
  } catch (e) {
    if (isMembraneError(e)) return e;
    throw e;
  }
  assert.fail("expected the file to be rejected");
}

/** 1-based line of the first line of `text` containing `needle`. */
export function lineOf(text: string, needle: string): number {
  const i = text.split("\n").findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `marker ${JSON.stringify(needle)} not in the document`);
  return i + 1;
}

/** One validation-error case: the first issue's path, the line it points at, and its message. */
export interface ErrorCase {
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

/** A CNP whose spec is `endpointSelector: {}` plus `body`, and its ingress / egress forms. */
export const specOf = (body: string): string => cnp(`endpointSelector: {}\n${body}`);
export const ing = (el: string): string => specOf(`ingress:\n${el}`);
export const egr = (el: string): string => specOf(`egress:\n${el}`);
export const tcp80 = 'ports: [{port: "80", protocol: TCP}]';

/** Runs error cases as one named test each. */
export function errorCases(title: string, cases: readonly ErrorCase[]): void {
  describe(title, () => {
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
}
