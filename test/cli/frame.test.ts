import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, cli } from "./run-cli.js";

const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

describe("membrane CLI frame", () => {
  test("version prints the package version", () => {
    const r = cli("version");
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `membrane ${version} (node ${process.versions.node})\n`);
  });

  test("version -o json prints one JSON document", () => {
    const r = cli("version", "-o", "json");
    assert.deepEqual(JSON.parse(r.stdout), { version, node: process.versions.node });
  });

  for (const cmd of [[], ["policy"], ["policy", "test"], ["policy", "trace"], ["version"]]) {
    test(`help of "membrane ${cmd.join(" ")}" exits 0 and shows examples`, () => {
      const r = cli(...cmd, "--help");
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^Usage: membrane/);
      assert.match(r.stdout, /\nExamples:\n {2}\$ membrane /);
    });
  }

  test("an unknown option is a usage error with exit code 2", () => {
    const r = cli("policy", "test", "--bogus", "examples/");
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "error: unknown option '--bogus'\n(add --help for usage)\n");
  });

  test("an unknown command is a usage error with exit code 2", () => {
    const r = cli("polcy");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: unknown command 'polcy'/);
  });

  test("an invalid -o value is a usage error", () => {
    const r = cli("version", "-o", "yaml");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /argument 'yaml' is invalid\. Allowed choices are text, json\./);
  });

  test("--debug adds the stack to an error", () => {
    const plain = cli(
      "policy",
      "trace",
      "--endpoints",
      "nope.yaml",
      "--from",
      "a",
      "--to",
      "b",
      "--port",
      "1",
    );
    assert.equal(plain.code, 2);
    assert.equal(plain.stderr, "Error: Cannot read nope.yaml: ENOENT\n");
    const debug = cli(
      "--debug",
      "policy",
      "trace",
      "--endpoints",
      "nope.yaml",
      "--from",
      "a",
      "--to",
      "b",
      "--port",
      "1",
    );
    assert.match(
      debug.stderr,
      /^Error: Cannot read nope\.yaml: ENOENT\nMembraneError: Cannot read nope\.yaml: ENOENT\n {4}at /,
    );
  });
});
