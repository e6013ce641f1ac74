// Every benchmark script answers --help and refuses a bogus flag before it creates anything. The
// scripts are found by listing dist/bench (a new one is checked without being named here):
//
//   a script with a main (its top level reads the command line or calls main):
//     --help            exit 0, a usage naming its own `node dist/bench/<script>.js` line
//     --m3b-bogus-flag  exit 2, the error names the flag and the valid ones
//   every other module, all imported by one process: nothing printed, nothing started, no exit
//   (a main this test failed to see would show here)
//
// Each runs in Node's permission model (bench/sandbox.ts): it may read files but not start a
// process, load an addon or write a file, so a script that ignored --help and started measuring
// fails with ERR_ACCESS_DENIED (checked) instead of creating namespaces, tables or children. The
// first test shows the sandbox does stop `ip netns add`. Then every bench command shown in the
// README, in the scripts' doc comments, in `npm run bench -- --help` and in each script's --help
// names a script that exists and only flags that script declares.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runner } from "../../bench/registry.js";
import { selected } from "../../bench/route.js";
import { askSandboxed, type Answer } from "../../bench/sandbox.js";

const DIST = fileURLToPath(new URL("../../bench/", import.meta.url));
const SRC = fileURLToPath(new URL("../../../bench/", import.meta.url));
const README = fileURLToPath(new URL("../../../README.md", import.meta.url));
const BOGUS = "--m3b-bogus-flag";
const DENIED = /ERR_ACCESS_DENIED/;

const scripts = (): string[] =>
  readdirSync(DIST)
    .filter((f) => f.endsWith(".js"))
    .sort();

/**
 * A script with a main: a top-level line (not indented, not a declaration) that reads the command
 * line, calls benchArgs or calls main. Modules of helpers have none.
 */
function hasMain(js: string): boolean {
  return js
    .split("\n")
    .filter((l) => !/^(\s|export |function |async function |class |import |\/\/|\/\*|\*|}|$)/.test(l))
    .some((l) => /process\.argv|\bbenchArgs\(|^(?:await |void )?main\(/.test(l));
}

/** Runs f over xs, `lanes` at a time (each call starts a node process). */
async function pool<T, R>(xs: readonly T[], lanes: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(xs.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < xs.length; i = next++) out[i] = await f(xs[i] as T);
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return out;
}

const show = (a: Answer): string => `exit ${a.code}\n--- stdout\n${a.stdout.slice(0, 2000)}\n--- stderr\n${a.stderr.slice(0, 2000)}`; // prettier-ignore

interface Checked {
  readonly file: string;
  readonly help: Answer;
  readonly bogus: Answer;
}

const IMPORTED_ALL = "m3b: every module imported";

describe("every benchmark script's command line (run in the sandbox, no root needed)", () => {
  let checked: Checked[] = [];
  let libraries: string[] = [];
  let imported: Answer | undefined;
  before(async () => {
    const all = scripts();
    const mains = all.filter((f) => hasMain(readFileSync(join(DIST, f), "utf8")));
    libraries = all.filter((f) => !mains.includes(f));
    // The runner itself asks its benchmarks for their flags: it may start (sandboxed) children.
    const opts = (file: string) => ({ allowChildren: file === "index.js", timeoutMs: 120_000 });
    checked = await pool(mains, 3, async (file): Promise<Checked> => {
      const help = await askSandboxed(join(DIST, file), ["--help"], opts(file));
      // index.js with a name: otherwise it asks every benchmark for its flags before refusing.
      const bogus = await askSandboxed(
        join(DIST, file),
        [...(file === "index.js" ? ["flows"] : []), BOGUS],
        opts(file),
      );
      return { file, help, bogus };
    });
    const dir = mkdtempSync(join(tmpdir(), "m3b-cli-"));
    try {
      const driver = join(dir, "import-all.mjs");
      const urls = libraries.map((f) => pathToFileURL(join(DIST, f)).href);
      writeFileSync(driver, `for (const u of ${JSON.stringify(urls)}) await import(u);\nconsole.log(${JSON.stringify(IMPORTED_ALL)});\n`); // prettier-ignore
      imported = await askSandboxed(driver, [BOGUS]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the sandbox stops a script that would create a namespace (the checks below can fail)", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "m3b-cli-"));
    const ns = `m3bprobe${process.pid}`;
    try {
      const probe = join(dir, "probe.mjs");
      writeFileSync(probe, `import { spawnSync } from "node:child_process";\nconsole.log("usage: probe");\nconst r = spawnSync("ip", ["netns", "add", "${ns}"]);\nconsole.log(r.status);\n`); // prettier-ignore
      const a = await askSandboxed(probe, ["--help"]);
      assert.notEqual(a.code, 0, show(a));
      assert.match(a.stderr, DENIED, show(a));
      if (process.getuid?.() !== 0) return t.diagnostic("not root: the namespace list is not read");
      const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
      assert.ok(!list.split("\n").some((l) => l.split(" ")[0] === ns), `${ns} was created`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (process.getuid?.() === 0) spawnSync("ip", ["netns", "delete", ns], { stdio: "ignore" });
    }
  });

  test("the directory holds the scripts this test expects to find (the listing works)", () => {
    const mains = checked.map((c) => c.file);
    for (const f of ["index.js", "scale.js", "runtime-kill.js", "policy-core.js", "traffic.js", "load.js"])
      assert.ok(mains.includes(f), `${f} found with a main among: ${mains.join(" ")}`);
    assert.ok(libraries.includes("traffic-stats.js") && libraries.includes("cli.js"), libraries.join(" "));
  });

  test("--help: exit 0 and a usage with the script's own command line, nothing started", () => {
    const bad = checked.filter((c) => {
      const own =
        c.file === "index.js"
          ? /npm run bench --/
          : new RegExp(`node dist/bench/${c.file.replace(".", "\\.")}`);
      return (
        c.help.code !== 0 ||
        !/usage/i.test(c.help.stdout) ||
        !own.test(c.help.stdout) ||
        DENIED.test(c.help.stderr)
      );
    });
    assert.deepEqual(
      bad.map((c) => c.file),
      [],
      bad.map((c) => `${c.file}: ${show(c.help)}`).join("\n\n"),
    );
  });

  test(`a bogus flag (${BOGUS}): exit 2, the error names it and the valid flags, nothing started`, () => {
    const bad = checked.filter((c) => {
      const a = c.bogus;
      return (
        a.code !== 2 ||
        !a.stderr.includes(BOGUS) ||
        !/(its|their) flags: /.test(a.stderr) ||
        DENIED.test(a.stderr)
      );
    });
    assert.deepEqual(
      bad.map((c) => c.file),
      [],
      bad.map((c) => `${c.file}: ${show(c.bogus)}`).join("\n\n"),
    );
  });

  test("the modules without a main, imported, do nothing: no output, nothing started, no exit", () => {
    const a = imported as Answer;
    assert.ok(libraries.length > 20, libraries.join(" "));
    assert.equal(a.code, 0, show(a));
    assert.equal(a.stdout, `${IMPORTED_ALL}\n`, show(a));
    assert.doesNotMatch(a.stderr, DENIED, show(a));
  });

  test("npm run bench refuses a bad value before it runs anything: the script checks what is routed to it", async () => {
    // Every node process under the sandboxed runner is sandboxed too: were the check broken, the run fails harmlessly.
    const a = await askSandboxed(join(DIST, "index.js"), ["runtime-kill", "--kills=abc"], {
      allowChildren: true,
      timeoutMs: 120_000,
    });
    assert.equal(a.code, 2, show(a));
    assert.match(a.stderr, /Cannot run runtime-kill: --kills=abc: give a whole number from 1 to/, show(a));
    assert.equal(a.stdout, "", "no benchmark ran");
  });

  test("no script reads its flags but through bench/cli.ts (so --help is complete)", () => {
    // process.argv[1] is which file runs (the guard of a script that is also imported); index.js routes.
    const bad = scripts()
      .filter((f) => f !== "cli.js" && f !== "index.js")
      .filter((f) => /process\.argv(?!\[1\])/.test(readFileSync(join(DIST, f), "utf8")));
    assert.deepEqual(bad, []);
  });

  test("every bench command shown (README, doc comments, every --help) names a script that exists, with declared flags", () => {
    const flagsOf = new Map<string, Set<string>>();
    for (const c of checked) {
      const synopsis = [...c.help.stdout.matchAll(/\[--([a-z][\w-]*)/g)].map((m) => m[1] as string);
      flagsOf.set(c.file.replace(/\.js$/, ""), new Set([...synopsis, "help", "help-json"]));
    }
    const texts: [string, string][] = [
      ["README.md", readFileSync(README, "utf8")],
      ...checked.map((c): [string, string] => [`${c.file} --help`, c.help.stdout]),
      ...readdirSync(SRC)
        .filter((f) => f.endsWith(".ts"))
        .map((f): [string, string] => [`bench/${f}`, readFileSync(join(SRC, f), "utf8")]),
    ];
    const problems: string[] = [];
    let commands = 0;
    for (const [where, body] of texts)
      for (const line of body.split("\n")) {
        const cmd = /npm run bench -- ([a-z][\w-]*)?(.*)|dist\/bench\/([\w-]+)\.js(.*)/.exec(line);
        if (cmd === null) continue;
        const rest = ((cmd[3] !== undefined ? cmd[4] : cmd[2]) ?? "").split(/->|#|`/)[0] ?? "";
        if (cmd[1] !== undefined && runner(cmd[1]) === undefined) {
          problems.push(`${where}: ${line.trim()}: no benchmark is named ${cmd[1]}`);
          continue;
        }
        // What npm run bench runs for it.
        const script =
          cmd[3] ??
          (cmd[1] === undefined ? "index" : (selected([cmd[1], ...rest.split(/\s+/)])[0]?.script ?? ""));
        commands++;
        const declared = script === "index" ? new Set(["help"]) : flagsOf.get(script);
        if (declared === undefined) {
          problems.push(`${where}: ${line.trim()}: dist/bench/${script}.js does not exist or has no main`);
          continue;
        }
        const named = [...rest.matchAll(/(?:^|[\s[])--([a-z][\w-]*)/g)].map((m) => m[1] as string);
        for (const f of named)
          if (!declared.has(f))
            problems.push(`${where}: ${line.trim()}: ${script}.js does not declare --${f}`);
      }
    assert.ok(commands > 40, `found ${commands} bench commands`);
    assert.deepEqual(problems, []);
  });
});
