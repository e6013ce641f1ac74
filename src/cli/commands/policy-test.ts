/**
 * `membrane policy test FILE|DIR...`: runs scenario files against the
 * policy engine and reports every query as PASS or FAIL.
 */
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { MembraneError } from "../../errors.js";
import { runScenarioText, type ScenarioResult } from "../../policy/scenario/index.js";
import { type CliContext, type GlobalOptions, OUTPUT_FORMATS, type OutputFormat } from "../context.js";
import { expandScenarioPaths } from "../files.js";
import { countResults, scenarioJson, scenarioLines, summaryLine, toJson } from "../format.js";

interface TestOptions extends GlobalOptions {
  readonly output: OutputFormat;
  readonly run?: string;
  readonly datapath?: boolean;
}

const EXAMPLES = `
Each query line reads:
  PASS|FAIL  <from> -> <to> <proto>/<port> [L7 request]  expected=<verdict> actual=<verdict>  by: <deciding rule>
and the run ends with the line "N passed, M failed" (N, M = queries; a file that
cannot be loaded counts as one failure and its error is printed).

Exit codes: 0 all passed, 1 a query failed or a file is invalid, 2 bad usage.

Examples:
  $ membrane policy test examples/starwars/sw-l7.yaml
  $ membrane policy test examples/                      # every *.yaml / *.yml below, sorted
  $ membrane policy test examples/ --run '^sw-'         # only scenarios whose name matches
  $ membrane policy test examples/ -o json | jq .failed
`;

export function policyTestCommand(ctx: CliContext): Command {
  return new Command("test")
    .description("check scenario files: the verdict of every query against the expected one")
    .argument("<paths...>", "scenario files, or directories searched recursively for *.yaml / *.yml")
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("text"))
    .option("--run <regex>", "only scenarios whose name matches this regular expression")
    .option(
      "--datapath",
      "also send each query as real packets through the kernel datapath (needs the agent)",
    )
    .addHelpText("after", EXAMPLES)
    .action((paths: string[], _opts: TestOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals<TestOptions>();
      if (opts.datapath) {
        ctx.err("membrane policy test --datapath needs the agent (not built yet)\n");
        ctx.exitCode = 2;
        return;
      }
      const filter = nameFilter(opts.run);
      const files = expandScenarioPaths(paths);
      const results: ScenarioResult[] = [];
      for (const file of files) {
        const text = readFileSync(file, "utf8");
        const r = runScenarioText(text, file, filter ? { filter } : {});
        if (r) results.push(r);
      }
      const { passed, failed } = countResults(results);
      const debug = opts.debug === true;
      if (opts.output === "json") {
        ctx.out(toJson({ scenarios: results.map((s) => scenarioJson(s, debug)), passed, failed }));
      } else {
        const lines: string[] = [];
        for (const s of results) lines.push(...scenarioLines(s, { debug }), "");
        lines.push(summaryLine(passed, failed));
        ctx.out(lines.join("\n") + "\n");
      }
      ctx.exitCode = failed > 0 ? 1 : 0;
    });
}

function nameFilter(run: string | undefined): ((name: string) => boolean) | undefined {
  if (run === undefined) return undefined;
  let re: RegExp;
  try {
    re = new RegExp(run);
  } catch (e) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use --run ${JSON.stringify(run)}: not a valid regular expression`,
      {
        cause: e,
        hint: "give a JavaScript regular expression, e.g. --run '^sw-'",
      },
    );
  }
  return (name) => re.test(name);
}
