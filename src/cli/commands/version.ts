/** `membrane version`: the version of this build. */
import { Command, Option } from "commander";
import { type CliContext, OUTPUT_FORMATS, type OutputFormat } from "../context.js";
import { toJson } from "../format.js";

export function versionCommand(ctx: CliContext): Command {
  return new Command("version")
    .description("print Membrane's version")
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("text"))
    .addHelpText("after", "\nExamples:\n  $ membrane version\n  $ membrane version -o json\n")
    .action((opts: { output: OutputFormat }) => {
      if (opts.output === "json") ctx.out(toJson({ version: ctx.version, node: process.versions.node }));
      else ctx.out(`membrane ${ctx.version} (node ${process.versions.node})\n`);
    });
}
