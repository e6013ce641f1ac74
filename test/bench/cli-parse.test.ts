// The benchmark scripts' command line, as functions (bench/cli.ts, bench/route.ts): a flag is read
// in both forms, an unknown flag or a bad value is refused naming it and the valid ones, --help
// wins, the usage shows every flag with its default; `npm run bench` gives each benchmark only the
// flags it declares. No process is started here (test/bench/cli.test.ts runs the scripts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isMembraneError } from "../../src/errors.js";
import {
  choice,
  custom,
  declaration,
  flag,
  int,
  num,
  parseBench,
  text,
  type BenchDeclaration,
} from "../../bench/cli.js";
import { usageText } from "../../bench/cli-usage.js";
import { RUNNERS, runner } from "../../bench/registry.js";
import { route, selected } from "../../bench/route.js";

const SPEC = {
  script: "demo",
  runner: "demo",
  measures: "Nothing: a declaration for the tests.",
  root: "namespaces",
  env: { DEMO_ROUNDS: "rounds (default 3)" },
  flags: {
    rounds: int({ help: "rounds", min: 1, max: 100, default: 3 }),
    kills: int({ help: "kills per round", min: 1, max: 1000, shown: "300; 100 with --quick" }),
    seconds: num({ help: "seconds per window", min: 0.5, max: 60, default: 2 }),
    mode: choice({ help: "the mode", choices: ["wireguard", "ipsec"], default: "wireguard" }),
    prefix: text({
      help: "stem",
      value: "STEM",
      default: "mbb",
      pattern: /^[a-z][a-z0-9]{1,5}$/,
      what: "2-6 letters",
    }),
    sizes: custom({
      help: "sizes",
      value: "N,N",
      default: [1],
      shown: "1",
      parse: (v) => v.split(",").map(Number),
    }),
    quick: flag("smaller"),
    "no-whole": flag("leave the whole state out"),
  },
};

/** The refusal parseBench throws for argv: its path (the flag) and its whole text. */
function refusal(argv: string[]): { path: string | undefined; text: string } {
  try {
    parseBench(SPEC, argv);
  } catch (e) {
    assert.ok(isMembraneError(e), String(e));
    assert.equal(e.code, "CLI_USAGE");
    return { path: e.location?.path, text: e.describe() };
  }
  assert.fail(`${argv.join(" ")} was accepted`);
}

describe("parseBench: a declared command line", () => {
  const ok = [
    { name: "no flags: every default", argv: [], want: { rounds: 3, kills: undefined, seconds: 2, mode: "wireguard", prefix: "mbb", quick: false } }, // prettier-ignore
    { name: "--flag=value", argv: ["--rounds=7", "--mode=ipsec"], want: { rounds: 7, mode: "ipsec" } },
    { name: "--flag value (what npm run bench -- auth --nodes 2 passes)", argv: ["--rounds", "7", "--seconds", "0.5"], want: { rounds: 7, seconds: 0.5 } }, // prettier-ignore
    { name: "a switch", argv: ["--quick", "--no-whole"], want: { quick: true, "no-whole": true } },
    { name: "an optional number left to the script", argv: ["--quick"], want: { kills: undefined } },
    { name: "the last of a repeated flag wins", argv: ["--rounds=2", "--rounds=4"], want: { rounds: 4 } },
    { name: "a custom parser's value", argv: ["--sizes=250,1000"], want: { sizes: [250, 1000] } },
  ] as const;
  for (const c of ok)
    test(c.name, () => {
      const p = parseBench(SPEC, c.argv);
      assert.equal(p.kind, "run");
      if (p.kind !== "run") return;
      for (const [k, v] of Object.entries(c.want)) assert.deepEqual(p.flags[k as keyof typeof p.flags], v, k);
    });

  const bad = [
    { name: "a misspelt flag (--round=3 would have run the default)", argv: ["--round=3"], path: "--round", says: /--round is not one of its flags/ }, // prettier-ignore
    { name: "a short flag not declared", argv: ["-q"], path: "-q", says: /-q is not one of its flags/ },
    { name: "a value out of range", argv: ["--rounds=0"], path: "--rounds", says: /--rounds=0: give a whole number from 1 to 100/ }, // prettier-ignore
    {
      name: "not a number",
      argv: ["--rounds=3x"],
      path: "--rounds",
      says: /--rounds=3x: give a whole number/,
    },
    { name: "a fraction for a whole number", argv: ["--rounds=2.5"], path: "--rounds", says: /whole number/ },
    { name: "an empty number", argv: ["--seconds="], path: "--seconds", says: /--seconds=: give a number from 0.5 to 60/ }, // prettier-ignore
    { name: "a word not among the choices", argv: ["--mode=mtls"], path: "--mode", says: /give one of wireguard, ipsec/ }, // prettier-ignore
    {
      name: "a value that breaks the pattern",
      argv: ["--prefix=../x"],
      path: "--prefix",
      says: /give 2-6 letters/,
    },
    { name: "a missing value at the end", argv: ["--rounds"], path: "--rounds", says: /--rounds needs a value \(--rounds=N\)/ }, // prettier-ignore
    { name: "a flag where the value should be", argv: ["--rounds", "--quick"], path: "--rounds", says: /needs a value/ }, // prettier-ignore
    {
      name: "a value given to a switch",
      argv: ["--quick=yes"],
      path: "--quick",
      says: /--quick takes no value/,
    },
    { name: "a stray word (rounds=3 without the dashes)", argv: ["rounds=3"], path: "rounds=3", says: /takes no arguments/ }, // prettier-ignore
  ];
  for (const c of bad)
    test(`refused, naming the flag and listing the valid ones: ${c.name}`, () => {
      const r = refusal(c.argv);
      assert.equal(r.path, c.path);
      assert.match(r.text, c.says);
      assert.match(r.text, /^Cannot run demo: /);
      assert.match(
        r.text,
        /its flags: --rounds, --kills, --seconds, --mode, --prefix, --sizes, --quick, --no-whole/,
      );
      assert.match(r.text, /node dist\/bench\/demo\.js --help/);
    });

  test("--help and -h win over anything else, even a bad flag", () => {
    assert.equal(parseBench(SPEC, ["--round=3", "--help"]).kind, "help");
    assert.equal(parseBench(SPEC, ["-h"]).kind, "help");
    assert.throws(
      () => parseBench(SPEC, ["--", "--help"]),
      /takes no arguments/,
      "after --, --help is an argument",
    );
  });

  test("--help-json answers only once the other flags are valid (how npm run bench checks values)", () => {
    assert.equal(parseBench(SPEC, ["--help-json"]).kind, "help-json");
    assert.equal(parseBench(SPEC, ["--help-json", "--rounds=4"]).kind, "help-json");
    assert.throws(() => parseBench(SPEC, ["--help-json", "--rounds=abc"]), /--rounds=abc/);
  });

  test("positional arguments: counted and checked when declared", () => {
    const spec = { ...SPEC, args: { usage: "<a> <b>", help: "two sizes", min: 2, max: 2, check: (a: readonly string[]) => (a.every((x) => /^\d+$/.test(x)) ? undefined : "give numbers") } }; // prettier-ignore
    const p = parseBench(spec, ["10", "--quick", "20"]);
    assert.deepEqual(p.kind === "run" ? p.args : undefined, ["10", "20"]);
    assert.throws(() => parseBench(spec, ["10"]), /give <a> <b> \(two sizes\); got 1/);
    assert.throws(() => parseBench(spec, ["10", "x"]), /give numbers/);
    assert.equal(parseBench(spec, ["--help-json"]).kind, "help-json", "--help-json needs no arguments");
  });
});

describe("the usage and the declaration", () => {
  const u = usageText(SPEC, SPEC.flags, undefined);
  test("the script's own command line, what it measures, root, every flag with its default, help and env", () => {
    assert.match(u, /^usage: node dist\/bench\/demo\.js \[--rounds=N\] \[--kills=N\]/);
    assert.match(u, /\n {7}npm run bench -- demo \[flags\]\n/);
    assert.match(u, /Nothing: a declaration for the tests\./);
    assert.match(u, /Needs root: yes \(namespaces\)/);
    for (const [n, f] of Object.entries(SPEC.flags)) {
      const line = u.split("\n").find((l) => l.startsWith(`  --${n}`)) ?? "";
      assert.ok(u.includes(`(default: ${f.shown})`), `${n}'s default in:\n${u}`);
      assert.ok(line !== "", `--${n} listed`);
    }
    assert.match(u, /\(default: 300; 100 with --quick\)/);
    assert.match(u, /-h, --help +print this usage and exit; runs and creates nothing/);
    assert.match(u, /DEMO_ROUNDS +rounds \(default 3\)/);
    assert.ok(
      u.split("\n").every((l) => l.length <= 100 || !l.includes(" ")),
      "lines wrap at 100",
    );
  });
  test("a script without root says so", () => {
    assert.match(usageText({ ...SPEC, root: false }, {}, undefined), /Needs root: no/);
  });
  test("the declaration: each flag's name, kind and default", () => {
    const d = declaration(SPEC);
    assert.deepEqual(d.flags.find((f) => f.name === "quick"), { name: "quick", kind: "boolean", value: "", default: "off" }); // prettier-ignore
    assert.deepEqual(d.flags.find((f) => f.name === "rounds"), { name: "rounds", kind: "string", value: "N", default: "3" }); // prettier-ignore
  });
});

describe("npm run bench: each benchmark gets only the flags it declares", () => {
  const d = (script: string, flags: Record<string, "boolean" | "string">): [string, BenchDeclaration] => [
    script,
    { script, root: false, flags: Object.entries(flags).map(([name, kind]) => ({ name, kind, value: "N", default: "" })) }, // prettier-ignore
  ];
  const DECL = new Map([
    d("auth", { nodes: "string" }),
    d("scale", { quick: "boolean", rounds: "string", endpoints: "string" }),
    d("runtime-kill", { quick: "boolean", rounds: "string", kills: "string" }),
    d("flows", {}),
    d("encryption", { mode: "string", seconds: "string" }),
  ]);
  const plan = (argv: string[]): Record<string, readonly string[]> =>
    Object.fromEntries(route(argv, selected(argv), DECL).map((s) => [s.entry.name, s.flags]));

  test("auth --nodes 2: the value after the flag is the flag's, not a name", () => {
    assert.deepEqual(plan(["auth", "--nodes", "2"]), { auth: ["--nodes=2"] });
  });
  test("a flag goes to every named benchmark that declares it, and only to those", () => {
    assert.deepEqual(plan(["scale", "runtime-kill", "flows", "--quick", "--kills=5"]), {
      scale: ["--quick"],
      "runtime-kill": ["--quick", "--kills=5"],
      flows: [],
    });
  });
  test("encryption --mode=mtls-tunnel runs the encryption script (every mode is its) with its flags", () => {
    assert.deepEqual(plan(["encryption", "--mode", "mtls-tunnel", "--seconds=5"]), {
      encryption: ["--mode=mtls-tunnel", "--seconds=5"],
    });
  });
  test("no name: every benchmark not run only when named", () => {
    const names = selected([]).map((r) => r.name);
    assert.ok(
      names.includes("scale") && !names.includes("layout") && !names.includes("encryption"),
      names.join(),
    );
  });
  const refused = [
    { name: "a flag no named benchmark takes", argv: ["flows", "--rounds=3"], says: /--rounds is not a flag of flows \(their flags: none\)/ }, // prettier-ignore
    { name: "a misspelt flag", argv: ["scale", "--round=3"], says: /--round is not a flag of scale \(their flags: --quick, --rounds, --endpoints\)/ }, // prettier-ignore
    {
      name: "a misspelt name",
      argv: ["scal", "--quick"],
      says: /scal is not a benchmark \(names: policy-core, /,
    },
    { name: "a value given to a switch", argv: ["scale", "--quick=1"], says: /--quick takes no value/ },
    { name: "a missing value", argv: ["runtime-kill", "--kills"], says: /--kills needs a value/ },
  ];
  for (const c of refused)
    test(`refused before anything runs: ${c.name}`, () => {
      assert.throws(
        () => plan(c.argv),
        (e: unknown) => isMembraneError(e) && e.code === "CLI_USAGE" && c.says.test(e.describe()),
      );
    });
  test("every benchmark of the registry has a unique name and its example starts with it (or encryption)", () => {
    assert.equal(new Set(RUNNERS.map((r) => r.name)).size, RUNNERS.length);
    for (const r of RUNNERS) assert.ok(runner(r.example.split(" ")[0] ?? "") !== undefined, r.example);
  });
});
