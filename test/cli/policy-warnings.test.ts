import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { cli, lastLine, tempFiles } from "./run-cli.js";

const CCNP_WITH_NAMESPACE = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: web
  namespace: default
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

const dir = tempFiles({
  "ccnp.yaml": CCNP_WITH_NAMESPACE,
  "ccnp-esc\u001b[31m.yaml": CCNP_WITH_NAMESPACE,
  "scenario.yaml": `name: ccnp-namespace
endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
  - {name: client, namespace: other, labels: {app: client}, ip: 10.0.1.20}
policies: |
${CCNP_WITH_NAMESPACE.replace(/^(?=.)/gm, "  ")}queries:
  - {from: client, to: web, proto: TCP, port: 80, expect: allow,
     note: "cluster-wide: the client of another namespace is allowed"}
`,
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("policy parser warnings reach the user", () => {
  test("apply --dry-run accepts a CCNP with metadata.namespace and warns on stderr with file:line", () => {
    const file = join(dir, "ccnp.yaml");
    const r = cli("apply", "--dry-run", "-f", file);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 policies valid \(dry run, nothing applied\)/);
    assert.match(
      r.stderr,
      new RegExp(`^warning: ${file.replace(/[.]/g, "\\.")}:5: metadata\\.namespace: .*ignored`, "m"),
    );
  });

  test("a warning escapes control characters of the file name (no raw ESC reaches the terminal)", () => {
    const r = cli("apply", "--dry-run", "-f", join(dir, "ccnp-esc\u001b[31m.yaml"));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^warning: .*ccnp-esc\\x1b\[31m\.yaml:5: metadata\.namespace/m);
    assert.ok(!r.stderr.includes("\u001b"), JSON.stringify(r.stderr));
  });

  test("policy test prints the warning at the scenario file's line and runs the scenario cluster-wide", () => {
    const file = join(dir, "scenario.yaml");
    const r = cli("policy", "test", file);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^WARN {2}.*scenario\.yaml:10: policies: metadata\.namespace: .*ignored/m);
    assert.equal(lastLine(r.stdout), "1 passed, 0 failed");
  });

  test("policy test -o json carries the warnings", () => {
    const r = cli("policy", "test", "-o", "json", join(dir, "scenario.yaml"));
    const doc = JSON.parse(r.stdout) as { scenarios: { warnings?: { line: number; path: string }[] }[] };
    assert.deepEqual(
      doc.scenarios[0]?.warnings?.map((w) => [w.line, w.path]),
      [[10, "policies: metadata.namespace"]],
    );
  });
});
