/**
 * Control characters in names, labels and file names are escaped in every
 * error the CLI prints (rd): its own errors, commander's usage errors, and a
 * scenario's load error. (The agent's answers: test/agent/api-bodies.test.ts.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cli, tempFiles } from "./run-cli.js";
import { escapeControls } from "../../src/errors.js";

const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

test("rd: escapeControls shows ESC, NUL and newline as \\xNN and is idempotent", () => {
  assert.equal(escapeControls("a\u001b[2J\u0000\nb"), "a\\x1b[2J\\x00\\x0ab");
  assert.equal(escapeControls(escapeControls("a\u001bb")), "a\\x1bb");
});

const cases: [string, string[], RegExp][] = [
  [
    "a file name (apply -f)",
    ["apply", "-f", "bad\u001b[31m\nx.yaml"],
    /Cannot read bad\\x1b\[31m\\x0ax\.yaml/,
  ],
  [
    "an argument commander refuses",
    ["get", "endpoints", "-o", "\u001b[2Jjson"],
    /'\\x1b\[2Jjson' is invalid/,
  ],
  ["an unknown option", ["version", "--\u001b[31mx"], /unknown option '--\\x1b\[31mx'/],
  [
    "a label (policy trace)",
    ["policy", "trace", "--endpoints", "nope\u001b.yaml", "--from", "a", "--to", "b"],
    /nope\\x1b\.yaml/,
  ],
];
for (const [name, args, shown] of cases) {
  test(`rd: the CLI escapes control characters in ${name}`, () => {
    const r = cli(...args);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, shown);
    const withoutLineEnds = r.stderr.replace(/\n/g, "");
    assert.doesNotMatch(withoutLineEnds, RAW, JSON.stringify(r.stderr));
    for (const line of r.stderr.split("\n")) assert.doesNotMatch(line, /\u001b/);
  });
}

test("rd: a scenario file whose name and content carry control characters is reported escaped", () => {
  const dir = tempFiles({
    "s\u001b[1m.yaml": 'name: x\nendpoints: [{name: "a\u001b[2J", labels: {}}]\nqueries: []\n',
  });
  const r = cli("policy", "test", dir);
  assert.notEqual(r.code, 0, r.stdout);
  assert.doesNotMatch(r.stdout + r.stderr, /\u001b/, JSON.stringify(r.stdout + r.stderr));
  assert.match(r.stdout + r.stderr, /s\\x1b\[1m\.yaml/);
});
