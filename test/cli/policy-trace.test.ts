import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, cli, lastLine, tempFiles } from "./run-cli.js";

const SW = "examples/starwars/sw-l3-l4.yaml";
// The L7 policy of sw-l7.yaml as a policy file of its own (the block scalar, dedented).
const l7Policy = readFileSync(join(ROOT, "examples/starwars/sw-l7.yaml"), "utf8")
  .split("policies: |\n")[1]
  ?.split("\nqueries:")[0]
  ?.replace(/^ {2}/gm, "");
const dir = tempFiles({
  "world.yaml": `endpoints:
  - {name: deathstar, labels: {org: empire, class: deathstar}, ip: 10.0.1.10}
  - {name: tiefighter, labels: {org: empire, class: tiefighter}, ip: 10.0.1.20}
`,
  "l7.yaml": l7Policy ?? "",
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("membrane policy trace", () => {
  test("a dropped connection ends with DENIED (drop) and exits 0", () => {
    const r = cli(
      "policy",
      "trace",
      "--endpoints",
      SW,
      "--from",
      "xwing",
      "--to",
      "deathstar",
      "--proto",
      "TCP",
      "--port",
      "80",
    );
    assert.equal(r.code, 0);
    assert.equal(lastLine(r.stdout), "Final verdict: DENIED (drop)");
    assert.equal(r.stdout.match(/Final verdict/g)?.length, 1);
  });

  test("an allowed connection ends with ALLOWED", () => {
    const r = cli(
      "policy",
      "trace",
      "--endpoints",
      SW,
      "--from",
      "tiefighter",
      "--to",
      "deathstar",
      "--port",
      "80",
    );
    assert.equal(r.code, 0);
    assert.equal(lastLine(r.stdout), "Final verdict: ALLOWED");
  });

  test("--policy adds policy files to the endpoints file", () => {
    const base = [
      "policy",
      "trace",
      "--endpoints",
      join(dir, "world.yaml"),
      "--policy",
      join(dir, "l7.yaml"),
    ];
    const put = cli(
      ...base,
      "--from",
      "tiefighter",
      "--to",
      "deathstar",
      "--port",
      "80",
      "--method",
      "PUT",
      "--path",
      "/v1/exhaust-port",
    );
    assert.equal(lastLine(put.stdout), "Final verdict: DENIED (http-403)");
    const post = cli(
      ...base,
      "--from",
      "tiefighter",
      "--to",
      "deathstar",
      "--port",
      "80",
      "--method",
      "POST",
      "--path",
      "/v1/request-landing",
    );
    assert.equal(lastLine(post.stdout), "Final verdict: ALLOWED");
  });

  test("-o json prints the query, verdict, steps and decision", () => {
    const r = cli(
      "policy",
      "trace",
      "--endpoints",
      SW,
      "--from",
      "xwing",
      "--to",
      "deathstar",
      "--port",
      "80",
      "-o",
      "json",
    );
    assert.equal(r.code, 0);
    const doc = JSON.parse(r.stdout) as {
      query: unknown;
      verdict: string;
      how: string;
      steps: string[];
      decision: { verdict: string };
    };
    assert.deepEqual(doc.query, { from: "xwing", to: "deathstar", proto: "TCP", port: 80 });
    assert.equal(doc.verdict, "deny");
    assert.equal(doc.how, "drop");
    assert.equal(doc.decision.verdict, "deny");
    assert.ok(doc.steps.length > 0);
  });

  test("an unknown endpoint is an input error naming the flag", () => {
    const r = cli(
      "policy",
      "trace",
      "--endpoints",
      SW,
      "--from",
      "ghost",
      "--to",
      "deathstar",
      "--port",
      "80",
    );
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'Error: Cannot run query: invalid --from\n  --from: no endpoint named "ghost" (known: default/deathstar, default/tiefighter, default/xwing)\n',
    );
  });

  test("a TCP trace without --port is a usage error", () => {
    const r = cli("policy", "trace", "--endpoints", SW, "--from", "xwing", "--to", "deathstar");
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "Error: Cannot trace: --proto TCP needs --port\nhint: see membrane policy trace --help\n",
    );
  });

  test("an fqdn destination uses the --dns answer", () => {
    const r = cli(
      "policy",
      "trace",
      "--endpoints",
      SW,
      "--from",
      "deathstar",
      "--to",
      "fqdn:a.example.com",
      "--port",
      "443",
      "--dns",
      "a.example.com=192.0.2.7",
    );
    assert.equal(r.code, 0);
    assert.equal(lastLine(r.stdout), "Final verdict: ALLOWED");
  });

  test("a missing --endpoints is a usage error", () => {
    const r = cli("policy", "trace", "--from", "xwing", "--to", "deathstar", "--port", "80");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /required option '--endpoints <file>' not specified/);
  });
});
