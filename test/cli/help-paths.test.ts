/**
 * Every file the README's commands and the `--help` examples name exists
 * (rd), so a new user can type them as written. Files a command writes
 * (`> flows.json`) are not required to exist.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { buildProgram } from "../../src/cli/main.js";
import { ROOT } from "./run-cli.js";

/** The full help text (with addHelpText examples) of every command. */
function allHelp(): string[] {
  const texts: string[] = [];
  let buf = "";
  const program = buildProgram({
    out: (s) => void (buf += s),
    err: () => undefined,
    version: "0",
    exitCode: 0,
  });
  const visit = (c: Command): void => {
    buf = "";
    c.outputHelp();
    texts.push(buf);
    for (const sub of c.commands) visit(sub);
  };
  visit(program);
  return texts;
}

/** Paths ending in .yaml/.yml/.json/.sh in a command line, except those it writes (after `>`). */
function pathsIn(line: string): string[] {
  const code = line.replace(/\s#\s.*$/, "").replace(/>\s*\S+/g, "");
  return [...code.matchAll(/(?:^|[\s=])((?:\.\/)?[\w./-]+\.(?:ya?ml|json|sh))(?=\s|$)/g)].map(
    (m) => m[1] ?? "",
  );
}

test("rd: every file named by a --help example or a README command exists", () => {
  const lines: string[] = [];
  for (const h of allHelp())
    lines.push(
      ...h
        .split("\n")
        .filter((l) => /^\s*\$ /.test(l))
        .map((l) => l.replace(/^\s*\$ /, "")),
    );
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  for (const m of readme.matchAll(/```sh\n([\s\S]*?)```/g)) lines.push(...(m[1] ?? "").split("\n"));
  const named = new Set(lines.flatMap(pathsIn).filter((p) => p !== "package.json"));
  assert.ok(named.has("examples/policies/sw-l3-l4.yaml"), [...named].join(" "));
  // A file an earlier example writes (`-o json > flows.json`) may be read by the next one.
  const written = new Set(lines.flatMap((l) => [...l.matchAll(/>\s*([^\s&|;]+)/g)].map((m) => m[1] ?? "")));
  const missing = [...named].filter((p) => !written.has(p) && !existsSync(join(ROOT, p)));
  assert.deepEqual(missing, [], `named but missing: ${missing.join(", ")}`);
});
