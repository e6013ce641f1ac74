/**
 * Hostile policy and scenario files: each is refused with a clear error that
 * names the limit, its value and where, instead of taking seconds to minutes
 * or crashing. The timeouts are safety nets, not assertions.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError, type MembraneError } from "../../../src/errors.js";
import { parsePolicies } from "../../../src/policy/api/index.js";
import { LIMITS } from "../../../src/policy/api/limits.js";
import { parseScenario } from "../../../src/policy/scenario/load.js";
import { cnp } from "./helpers.js";

const SAFETY = { timeout: 120_000 };

function refuse(f: () => unknown): MembraneError {
  try {
    f();
  } catch (e) {
    if (isMembraneError(e)) return e;
    throw e;
  }
  assert.fail("the input was accepted");
}

const policy = (text: string) => () => parsePolicies(text, "h.yaml");

/** The limit error: code, limit name and value in the message, file:line. */
function assertLimit(e: MembraneError, name: keyof typeof LIMITS, line?: number): void {
  assert.equal(e.code, "INPUT_LIMIT_EXCEEDED", e.message);
  assert.ok(e.message.includes(`(limit ${name}=${LIMITS[name]})`), e.message);
  assert.equal(e.location?.file, "h.yaml");
  if (line !== undefined) {
    assert.equal(e.location?.line, line);
    assert.ok(e.message.endsWith(`, at h.yaml:${line}`), e.message);
  }
}

const HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\n";
const times = (n: number, s: string): string => Array<string>(n).fill(s).join(", ");

describe("policy files: alias bombs", () => {
  test(
    "aliases nesting aliases through specs, ingress, toPorts and ports (the trial's 16 s shape)",
    SAFETY,
    () => {
      const n = 30;
      const text =
        HEAD +
        `x0: &q {port: "80", protocol: TCP}\n` +
        `x1: &t {ports: [${times(n, "*q")}]}\n` +
        `x2: &r {toPorts: [${times(n, "*t")}]}\n` +
        `x3: &s {endpointSelector: {}, ingress: [${times(n, "*r")}]}\n` +
        `specs: [${times(n, "*s")}]\n`;
      assert.ok(text.length < 1300);
      assertLimit(refuse(policy(text)), "aliasNodes");
    },
  );

  test("a doubling chain of list aliases (2^40 nodes)", SAFETY, () => {
    const lines = ["r0: &r0 [{fromEndpoints: [{}]}]"];
    for (let i = 1; i <= 40; i++) lines.push(`r${i}: &r${i} [*r${i - 1}, *r${i - 1}]`);
    const text = HEAD + lines.join("\n") + "\nspecs: [{endpointSelector: {}, ingress: *r40}]\n";
    // The rules are lists, not mappings: every expanded one would be a problem.
    const e = refuse(policy(text));
    assert.equal(e.code, "INPUT_LIMIT_EXCEEDED", e.message);
  });

  test("thousands of aliases to one selector in matchLabels and fromEndpoints", SAFETY, () => {
    const sel = `{matchLabels: {${Array.from({ length: 50 }, (_, i) => `k${i}: v`).join(", ")}}}`;
    const text = cnp(
      `x: &sel ${sel}\nendpointSelector: {}\ningress:\n- fromEndpoints: [${times(5000, "*sel")}]`,
    );
    assertLimit(refuse(policy(text)), "aliasNodes");
  });

  test("an alias inside the value its anchor names is refused, not followed forever", SAFETY, () => {
    const text = HEAD + "spec: &s {endpointSelector: {}, ingress: [{fromEndpoints: [*s]}]}\n";
    const e = refuse(policy(text));
    assert.ok(e.code === "INPUT_LIMIT_EXCEEDED" || e.code === "POLICY_INVALID", e.message);
  });

  test("merge keys `<<: *a` chains are not expanded (YAML 1.2: `<<` is an unknown field)", SAFETY, () => {
    const lines = ["m0: &m0 {app: web}"];
    for (let i = 1; i <= 30; i++) lines.push(`m${i}: &m${i} {<<: [*m${i - 1}, *m${i - 1}]}`);
    const text = HEAD + lines.join("\n") + "\nspec: {endpointSelector: {matchLabels: *m30}}\n";
    const e = refuse(policy(text));
    assert.ok(["POLICY_INVALID", "INPUT_LIMIT_EXCEEDED"].includes(e.code), e.message);
  });

  test("a few aliases in an ordinary policy still work", () => {
    const text = cnp(
      "endpointSelector: &web {matchLabels: {app: web}}\ningress:\n- fromEndpoints: [*web]\n  toPorts: &p [{ports: [{port: '80'}]}]\n- fromEntities: [world]\n  toPorts: *p",
    );
    const [r] = parsePolicies(text, "h.yaml");
    assert.equal(r?.rules[0]?.ingress.length, 2);
  });
});

describe("policy files: nesting, size, documents", () => {
  test("deep flow nesting [[[[...]]]] is refused at the line that crosses the limit", SAFETY, () => {
    const d = 1_000_000;
    assertLimit(refuse(policy("[".repeat(d) + "]".repeat(d))), "depth", 1);
  });

  test("deep flow mappings {a: {a: ...}} are refused", SAFETY, () => {
    const d = 400_000;
    assertLimit(refuse(policy(HEAD + "spec: " + "{a: ".repeat(d) + "1" + "}".repeat(d) + "\n")), "depth", 4);
  });

  test("deep block nesting and `- - - -` chains are refused", SAFETY, () => {
    const block = Array.from({ length: 1000 }, (_, i) => " ".repeat(i) + "a:").join("\n") + " 1\n";
    assertLimit(refuse(policy(block)), "depth", LIMITS.depth);
    assertLimit(refuse(policy("- ".repeat(200_000) + "x\n")), "depth", 1);
  });

  test("nesting up to the limit is still parsed (and reported as the wrong shape)", () => {
    const d = LIMITS.depth - 2;
    const e = refuse(policy(HEAD + "spec: " + "[".repeat(d) + "]".repeat(d) + "\n"));
    assert.equal(e.code, "POLICY_INVALID");
  });

  test("a file over the size limit is refused before it is parsed", SAFETY, () => {
    const text = cnp("endpointSelector: {}") + "# " + "x".repeat(LIMITS.bytes) + "\n";
    const e = refuse(policy(text));
    assertLimit(e, "bytes");
    assert.match(e.message, /larger than the limit of 2097152 bytes/);
  });

  test("more nodes than the limit (1 MiB of `- []`: 700 MB of heap) are refused", SAFETY, () => {
    const e = refuse(policy("- [[]]\n".repeat(150_000)));
    assertLimit(e, "nodes");
  });

  test("a dense policy file near the size limit is still read", SAFETY, () => {
    const rule =
      "- toPorts: [{ports: [{port: '80', protocol: TCP}]}]\n  fromEndpoints: [{matchLabels: {app: web, tier: db}}]\n";
    const body = rule.repeat(Math.floor((LIMITS.bytes - 300) / (rule.length + 4)));
    const [r] = parsePolicies(cnp("endpointSelector: {}\ningress:\n" + body), "h.yaml");
    assert.ok((r?.rules[0]?.ingress.length ?? 0) > 10_000);
  });

  test("more documents than the limit are refused at the first one too many", SAFETY, () => {
    const text = Array.from({ length: LIMITS.documents + 5 }, () => "a: 1\n").join("---\n");
    assertLimit(refuse(policy(text)), "documents", 2 * LIMITS.documents);
  });
});

describe("policy files: many problems", () => {
  test("120,000 problems: the first 100 are listed, then how many more (no stack overflow)", SAFETY, () => {
    const text = cnp("endpointSelector: {}\ningress:\n" + "- 1\n".repeat(120_000));
    const e = refuse(policy(text));
    assert.equal(e.code, "POLICY_INVALID");
    assert.match(e.message, /^Cannot apply h\.yaml: 120000 problems in 1 of 1 document$/);
    assert.equal(e.issues.length, LIMITS.problems + 1);
    assert.equal(e.issues[0]?.path, "spec.ingress[0]");
    assert.equal(e.issues[LIMITS.problems]?.message, "... and 119900 more problems");
  });

  test(
    "a 2 MiB unknown field name is reported without a 'did you mean' table of 2 million rows",
    SAFETY,
    () => {
      const text = cnp("endpointSelector: {}\n? " + "k".repeat(LIMITS.bytes - 200) + "\n: 1");
      const e = refuse(policy(text));
      assert.equal(e.code, "POLICY_INVALID");
    },
  );
});

describe("syntax errors", () => {
  test("a flood of syntax errors stops after the first 100 (it took 20 s and 512 MB)", SAFETY, () => {
    const flood = "x: &a {}\n" + "- *a\n".repeat(200_000);
    const e = refuse(policy(flood));
    assert.equal(e.code, "POLICY_YAML_SYNTAX");
    assert.equal(e.message, "Cannot apply h.yaml: more than 100 YAML syntax errors");
    assert.equal(e.issues.length, LIMITS.problems + 1);
    assert.equal(
      e.issues[LIMITS.problems]?.message,
      "... and more: reading stopped after 100 YAML syntax errors",
    );
    const s = refuse(() => parseScenario(flood, "h.yaml"));
    assert.equal(s.code, "SCENARIO_INVALID");
    assert.equal(s.issues.length, LIMITS.problems + 1);
    assert.match(s.issues[LIMITS.problems]?.message ?? "", /reading stopped after 100 YAML syntax errors/);
  });
});

describe("scenario files", () => {
  const SCEN = "name: s\nqueries: []\n";
  const scenario = (text: string) => () => parseScenario(text, "h.yaml");

  test("deep nesting, size and documents are refused like policy files", SAFETY, () => {
    assertLimit(refuse(scenario(SCEN + "notes: " + "[".repeat(300_000) + "\n")), "depth", 3);
    assertLimit(refuse(scenario(SCEN + "# " + "x".repeat(LIMITS.bytes) + "\n")), "bytes");
    const many = Array.from({ length: LIMITS.documents + 1 }, () => SCEN).join("---\n");
    assertLimit(refuse(scenario(many)), "documents");
  });

  test("a second document is a problem of the scenario file", () => {
    const e = refuse(scenario(SCEN + "---\n" + SCEN));
    assert.equal(e.code, "SCENARIO_INVALID");
    assert.deepEqual(
      e.issues.map((i) => `${i.line}: ${i.message}`),
      ["3: a scenario file holds one YAML document, not 2"],
    );
  });

  test("an alias bomb in the policies block is refused at the scenario file's line", SAFETY, () => {
    const n = 30;
    const pol =
      HEAD +
      `x0: &q {port: "80", protocol: TCP}\n` +
      `x1: &t {ports: [${times(n, "*q")}]}\n` +
      `x2: &r {toPorts: [${times(n, "*t")}]}\n` +
      `specs: [{endpointSelector: {}, ingress: [${times(n, "*r")}]}]\n`;
    const text = SCEN + "policies: |\n" + pol.replace(/^/gm, "  ");
    const e = refuse(scenario(text));
    assertLimit(e, "aliasNodes");
    assert.ok((e.location?.line ?? 0) > 3, e.message);
  });

  test("120,000 problems in the policies block: the first 100, then a count", SAFETY, () => {
    const pol = cnp("endpointSelector: {}\ningress:\n" + "- 1\n".repeat(120_000));
    const e = refuse(scenario(SCEN + "policies: |\n" + pol.replace(/^/gm, "  ")));
    assert.equal(e.code, "SCENARIO_INVALID");
    const n = Number(/: (\d+) problems$/.exec(e.message)?.[1]);
    assert.ok(n >= 120_000, e.message);
    assert.equal(e.issues.length, LIMITS.problems + 1);
    assert.equal(e.issues[LIMITS.problems]?.message, `... and ${n - LIMITS.problems} more problems`);
  });
});
