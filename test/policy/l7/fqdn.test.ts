import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  compileDnsRules,
  compileFqdnPattern,
  compileServerNames,
  fqdnMatches,
  fqdnNameProblem,
  fqdnPatternProblem,
  normalizeName,
} from "../../../src/policy/l7/fqdn.js";
import { MembraneError } from "../../../src/errors.js";

describe("normalizeName", () => {
  const cases: { name: string; input: string; want: string }[] = [
    { name: "adds the trailing dot", input: "cilium.io", want: "cilium.io." },
    { name: "keeps an existing trailing dot", input: "cilium.io.", want: "cilium.io." },
    { name: "lower-cases ASCII", input: "Sub.CILIUM.io", want: "sub.cilium.io." },
    { name: "empty name is the root", input: "", want: "." },
    { name: "does not fold the Kelvin sign into k", input: "\u212Aube.io", want: "\u212Aube.io." },
    { name: "does not fold dotted capital I", input: "\u0130.io", want: "\u0130.io." },
  ];
  for (const c of cases) test(c.name, () => assert.equal(normalizeName(c.input), c.want));
});

describe("matchPattern", () => {
  const cases: { name: string; pattern: string; yes: string[]; no: string[] }[] = [
    {
      name: "a lone star matches every name and the root",
      pattern: "*",
      yes: ["cilium.io", "a.b.c.d.", "x", ".", "under_score.io"],
      no: ["a..b", ".a.io", "spa ce.io", "nul\u0000.io", "caf\u00e9.io"],
    },
    {
      name: "only stars with a dot match everything",
      pattern: "**.",
      yes: ["a.io", "a.b.io"],
      no: ["a b.io"],
    },
    {
      name: "*.cilium.io matches exactly one label below cilium.io",
      pattern: "*.cilium.io",
      yes: ["sub.cilium.io", "SUB.Cilium.IO.", "a-b_c.cilium.io"],
      no: ["cilium.io", "a.b.cilium.io", ".cilium.io", "subcilium.io", "sub.cilium.io.evil.com"],
    },
    {
      name: "**.cilium.io matches one or more whole labels",
      pattern: "**.cilium.io",
      yes: ["a.cilium.io", "a.b.cilium.io", "x.y.z.cilium.io."],
      no: ["cilium.io", "acilium.io", "a.cilium.io.com", "a..cilium.io"],
    },
    {
      name: "three leading stars are also a subdomain wildcard",
      pattern: "***.cilium.io",
      yes: ["a.b.cilium.io"],
      no: ["cilium.io"],
    },
    {
      name: "a star inside a label matches zero or more characters",
      pattern: "part*ial.com",
      yes: ["partial.com", "part-extra-ial.com", "partXial.com"],
      no: ["part.ial.com", "parial.com", "partial.com.evil", "xpartial.com"],
    },
    {
      name: "several stars in one label keep their order",
      pattern: "a*b*c.io",
      yes: ["abc.io", "a1b2c.io", "abbbc.io", "aXbYbZc.io"],
      no: ["acb.io", "ab.io", "bac.io", "a.b.c.io"],
    },
    {
      name: "overlapping prefix and suffix need enough characters",
      pattern: "ab*ba.io",
      yes: ["abba.io", "ab-ba.io"],
      no: ["aba.io", "ab.io"],
    },
    {
      name: "a star label in the middle matches one label",
      pattern: "api.*.svc.cluster.local",
      yes: ["api.prod.svc.cluster.local."],
      no: ["api.svc.cluster.local", "api.a.b.svc.cluster.local"],
    },
    {
      name: "kubernetes names need every label allowed",
      pattern: "*.*.svc.cluster.local.",
      yes: ["web.prod.svc.cluster.local"],
      no: ["web.svc.cluster.local"],
    },
    {
      name: "subdomain wildcard then a star label",
      pattern: "**.*.io",
      yes: ["a.b.io", "a.b.c.io"],
      no: ["b.io", "io"],
    },
    {
      name: "pattern without star is an exact name",
      pattern: "Cilium.IO",
      yes: ["cilium.io", "cilium.io."],
      no: ["www.cilium.io", "cilium.io.io"],
    },
    {
      name: "a dot in the pattern is a literal dot, not any character",
      pattern: "a.io",
      yes: ["a.io"],
      no: ["aXio", "a-io"],
    },
    {
      name: "unicode look-alikes never match ASCII labels",
      pattern: "*.kube.io",
      yes: ["x.kube.io"],
      no: ["x.\u212Aube.io", "x.kub\u0435.io", "\u0131.kube.io"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const m = compileFqdnPattern(c.pattern);
      for (const n of c.yes) assert.equal(m(n), true, `${c.pattern} should match ${JSON.stringify(n)}`);
      for (const n of c.no) assert.equal(m(n), false, `${c.pattern} should not match ${JSON.stringify(n)}`);
    });
  }

  const invalid: { name: string; pattern: string; why: string }[] = [
    { name: "regex metacharacters are rejected", pattern: "a.(b|c).io", why: "only letters" },
    { name: "a regex star-dot is rejected", pattern: ".*\\.io", why: "only letters" },
    { name: "brackets are rejected", pattern: "[a-z].io", why: "only letters" },
    { name: "a NUL byte is rejected", pattern: "a\u0000.io", why: "only letters" },
    { name: "non-ASCII letters are rejected", pattern: "caf\u00e9.io", why: "only letters" },
    { name: "an empty pattern is rejected", pattern: "", why: "it is empty" },
    { name: "an empty label is rejected", pattern: "a..io", why: "it has an empty label" },
    { name: "a leading dot is rejected", pattern: ".a.io", why: "it has an empty label" },
    { name: "a pattern longer than 255 is rejected", pattern: "a".repeat(256), why: "256 characters long" },
  ];
  for (const c of invalid) {
    test(c.name, () => {
      assert.match(fqdnPatternProblem(c.pattern) ?? "", new RegExp(c.why.replace(/[.*()]/g, "\\$&")));
      assert.throws(
        () => compileFqdnPattern(c.pattern),
        (e: unknown) =>
          e instanceof MembraneError &&
          e.code === "POLICY_INVALID" &&
          e.message.startsWith("Cannot use FQDN pattern"),
      );
    });
  }

  test("matchName rejects a star", () => {
    assert.equal(fqdnNameProblem("*.io"), "only letters, digits, '-', '_' and '.' are allowed");
    assert.equal(fqdnNameProblem("a.io."), undefined);
  });

  test("a pattern with many stars stays linear on a hostile long label", () => {
    const m = compileFqdnPattern("*a*a*a*a*a*a*a*a*a*a*b.io");
    const label = "a".repeat(200_000);
    const t0 = process.hrtime.bigint();
    assert.equal(m(label + ".io"), false);
    assert.equal(m(label + "b.io"), true);
    assert.ok(process.hrtime.bigint() - t0 < 500_000_000n, "matching took more than 0.5 s");
  });

  test("a very long name of valid labels matches the lone star and the subdomain wildcard", () => {
    const name = Array.from({ length: 5000 }, () => "abc").join(".") + ".cilium.io";
    assert.equal(compileFqdnPattern("*")(name), true);
    assert.equal(compileFqdnPattern("**.cilium.io")(name), true);
    assert.equal(compileFqdnPattern("*.cilium.io")(name), false);
  });
});

describe("fqdnMatches", () => {
  const cases: {
    name: string;
    rule: { matchName?: string; matchPattern?: string };
    input: string;
    want: boolean;
  }[] = [
    {
      name: "matchName is exact after normalisation",
      rule: { matchName: "api.io." },
      input: "API.io",
      want: true,
    },
    {
      name: "matchName does not match a subdomain",
      rule: { matchName: "api.io" },
      input: "x.api.io",
      want: false,
    },
    {
      name: "matchName does not match a suffix",
      rule: { matchName: "api.io" },
      input: "evilapi.io",
      want: false,
    },
    {
      name: "matchName with a NUL in the name does not match",
      rule: { matchName: "api.io" },
      input: "api.io\u0000",
      want: false,
    },
    {
      name: "matchName wins over matchPattern",
      rule: { matchName: "a.io", matchPattern: "*" },
      input: "b.io",
      want: false,
    },
    { name: "a rule with neither field matches nothing", rule: {}, input: "a.io", want: false },
    {
      name: "matchPattern is used when no matchName",
      rule: { matchPattern: "*.io" },
      input: "a.io",
      want: true,
    },
  ];
  for (const c of cases) test(c.name, () => assert.equal(fqdnMatches(c.rule, c.input), c.want));

  test("compiles a rule once and gives the same answer on reuse", () => {
    const rule = { matchPattern: "*.cilium.io" };
    assert.equal(fqdnMatches(rule, "a.cilium.io"), true);
    assert.equal(fqdnMatches(rule, "cilium.io"), false);
    assert.equal(fqdnMatches(rule, "b.cilium.io"), true);
  });
});

describe("DNS rules and server names", () => {
  test("a DNS query passes when any rule matches", () => {
    const m = compileDnsRules([{ matchName: "api.io" }, { matchPattern: "*.cdn.io" }]);
    assert.deepEqual(
      ["api.io", "x.cdn.io", "cdn.io", "other.io"].map((n) => m(n)),
      [true, true, false, false],
    );
  });
  test("no DNS rules pass nothing", () => assert.equal(compileDnsRules([])("a.io"), false));
  test("SNI matches serverNames patterns", () => {
    const m = compileServerNames(["**.example.com", "api.other.io"]);
    assert.deepEqual(
      ["www.example.com", "example.com", "api.other.io", "API.OTHER.IO", "x.api.other.io"].map((n) => m(n)),
      [true, false, true, true, false],
    );
  });
});
