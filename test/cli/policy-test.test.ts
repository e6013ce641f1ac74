import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { cli, lastLine, tempFiles } from "./run-cli.js";

const WORLD = `endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
  - {name: client, namespace: default, labels: {app: client}, ip: 10.0.1.20}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: web, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: web}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

const dir = tempFiles({
  "a-failing.yaml": `name: failing\n${WORLD}queries:
  - {from: client, to: web, proto: TCP, port: 80, expect: allow}
  - {from: client, to: web, proto: TCP, port: 81, expect: allow, note: "wrong on purpose"}
`,
  "b-invalid.yaml": `name: invalid\n${WORLD}queries:\n  - {from: ghost, to: web, proto: TCP, port: 80, expect: allow}\n`,
  "c-passing.yaml": `name: passing\n${WORLD}queries:\n  - {from: client, to: web, proto: TCP, port: 80, expect: allow}\n`,
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("membrane policy test", () => {
  test("--netns-prefix is checked before anything is built (no root needed to be refused)", () => {
    for (const bad of ["Bad", "1abc", "abcdefghi", "a/b", "a-b", ""]) {
      const r = cli("policy", "test", "--datapath", "--netns-prefix", bad, join(dir, "c-passing.yaml"));
      assert.equal(r.code, 2, `${bad}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /Cannot use --netns-prefix/);
    }
  });

  test("every example scenario passes", () => {
    const r = cli("policy", "test", "examples/");
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^\d+ passed, 0 failed$/m);
    assert.equal(r.code, 0);
  });

  test("the Star Wars L3/L4 scenario prints one line per query and the summary", () => {
    const r = cli("policy", "test", "examples/starwars/sw-l3-l4.yaml");
    assert.equal(r.code, 0);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "=== sw-l3-l4 (examples/starwars/sw-l3-l4.yaml)");
    assert.match(
      lines[2] ?? "",
      /^PASS {2}xwing -> deathstar TCP\/80 +expected=deny\/drop +actual=deny\/drop +by: ingress: default deny \(no rule allows\)$/,
    );
    assert.match(
      lines[1] ?? "",
      /^PASS {2}tiefighter -> deathstar TCP\/80 +expected=allow +actual=allow +by: ingress: default\/rule1 spec\.ingress\[0\]$/,
    );
    assert.equal(lastLine(r.stdout), "5 passed, 0 failed");
  });

  test("a failing query exits 1 and is reported as FAIL with its note", () => {
    const r = cli("policy", "test", join(dir, "a-failing.yaml"));
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      /^FAIL {2}client -> web TCP\/81 +expected=allow +actual=deny\/drop +by: ingress: default deny \(no rule allows\)$/m,
    );
    assert.match(r.stdout, /^ {6}note: wrong on purpose$/m);
    assert.equal(lastLine(r.stdout), "1 passed, 1 failed");
  });

  test("an invalid file is reported, counts as one failure, and the other files still run", () => {
    const r = cli("policy", "test", dir);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^ERROR Cannot load scenario file .*b-invalid\.yaml: 1 problem$/m);
    assert.match(r.stdout, /b-invalid\.yaml:15: queries\[0\]\.from: no endpoint named "ghost"/);
    assert.match(r.stdout, /^=== passing \(/m);
    assert.equal(lastLine(r.stdout), "2 passed, 2 failed");
  });

  test("files of a directory run in sorted order", () => {
    const r = cli("policy", "test", dir);
    const headers = r.stdout.split("\n").filter((l) => l.startsWith("==="));
    assert.deepEqual(
      headers.map((h) => h.replace(/ \([^()]*\)$/, "")),
      ["=== failing", "=== (not loaded)", "=== passing"],
    );
  });

  test("-o json prints one document with scenarios, results and counts", () => {
    const r = cli("policy", "test", dir, "-o", "json");
    assert.equal(r.code, 1);
    const doc = JSON.parse(r.stdout) as {
      scenarios: {
        file: string;
        name?: string;
        results: Record<string, unknown>[];
        error?: { code: string };
      }[];
      passed: number;
      failed: number;
    };
    assert.equal(doc.passed, 2);
    assert.equal(doc.failed, 2);
    assert.deepEqual(
      doc.scenarios.map((s) => [s.name, s.results.length, s.error?.code]),
      [
        ["failing", 2, undefined],
        [undefined, 0, "SCENARIO_INVALID"],
        ["passing", 1, undefined],
      ],
    );
    assert.deepEqual(doc.scenarios[0]?.results[1], {
      index: 1,
      line: 16,
      from: "client",
      to: "web",
      proto: "TCP",
      port: 81,
      expect: "allow",
      actual: "deny",
      actualHow: "drop",
      pass: false,
      decidedBy: ["ingress: default deny (no rule allows)"],
      note: "wrong on purpose",
    });
  });

  test("--run keeps only scenarios whose name matches", () => {
    const r = cli("policy", "test", "examples/starwars", "--run", "^sw-l7$");
    assert.equal(r.code, 0);
    assert.deepEqual(
      r.stdout.split("\n").filter((l) => l.startsWith("===")),
      ["=== sw-l7 (examples/starwars/sw-l7.yaml)"],
    );
    assert.equal(lastLine(r.stdout), "5 passed, 0 failed");
  });

  test("--run with an invalid regular expression is a usage error", () => {
    const r = cli("policy", "test", "examples/", "--run", "(");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^Error: Cannot use --run "\(": not a valid regular expression$/m);
    assert.equal(r.stdout, "");
  });

  test(
    "--datapath builds the Star Wars scenario for real and agrees with the offline verdicts",
    {
      skip: process.getuid?.() !== 0 ? "needs root (network namespaces, nftables)" : false,
      timeout: 120_000,
    },
    () => {
      const r = cli("policy", "test", "--datapath", "examples/starwars/sw-l3-l4.yaml");
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^5 passed, 0 failed, 0 skipped$/m);
    },
  );

  test("a path that does not exist is a usage error", () => {
    const r = cli("policy", "test", "no-such-dir/x.yaml");
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "Error: Cannot read no-such-dir/x.yaml: no such file or directory\nhint: pass scenario files or directories that contain *.yaml files\n",
    );
  });
});
