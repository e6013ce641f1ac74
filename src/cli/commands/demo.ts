/** `membrane demo`: the Star Wars demo on real packets (needs root). */
import { Command } from "commander";
import { runDemo } from "../demo.js";
import type { CliContext } from "../context.js";

export function demoCommand(ctx: CliContext): Command {
  return new Command("demo")
    .description(
      "run Cilium's Star Wars demo on this machine: agent, endpoints, policy, real traffic, then clean up (needs root)",
    )
    .option("--keep", "keep the namespaces afterwards, to look around")
    .addHelpText(
      "after",
      `
Everything happens in scratch network namespaces; the machine's own interfaces, routes and
nftables are never touched. Ctrl-C cleans up too. Exit code 1 if any attempt did not end as
Cilium would have it.

Example:
  $ sudo membrane demo
`,
    )
    .action(async (o: { keep?: boolean }) => {
      const mismatches = await runDemo({ out: ctx.out, keep: o.keep === true });
      if (mismatches > 0) ctx.exitCode = 1;
    });
}
