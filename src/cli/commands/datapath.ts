/** `membrane datapath diff`: what the kernel holds against the agent's desired state. */
import { Command, Option } from "commander";
import { stringify } from "yaml";
import type { CliContext } from "../context.js";
import { client, socketOption } from "../agent-client.js";
import { toJson } from "../format.js";

export function datapathCommand(ctx: CliContext): Command {
  const cmd = new Command("datapath").description("inspect what the kernel enforces");
  cmd
    .command("diff")
    .description("show desired state against what the kernel holds (exit 1 when they differ)")
    .addOption(socketOption())
    .addOption(
      new Option("-o, --output <format>", "text | json | yaml")
        .choices(["text", "json", "yaml"])
        .default("text"),
    )
    .addHelpText(
      "after",
      `
Prints one line per difference in Membrane's nftables table, as the next kernel transaction
would fix it: "+ element|map|chain ..." is missing from the kernel, "- ..." is in the kernel but
not desired, "~ ..." differs. In sync, the text output is "in sync: the kernel holds the desired
state"; -o json and -o yaml print {"diff": [the same lines]} (an empty list when in sync).

Examples:
  $ membrane datapath diff
  $ membrane datapath diff -o yaml
`,
    )
    .action(async (o: { socket: string; output: "text" | "json" | "yaml" }) => {
      const r = (await client(o).request("GET", "/v1/datapath/diff")) as { diff: string[] };
      const value = { diff: r.diff };
      if (o.output === "json") ctx.out(toJson(value));
      else if (o.output === "yaml") ctx.out(stringify(value));
      else
        ctx.out(
          r.diff.length === 0 ? "in sync: the kernel holds the desired state\n" : r.diff.join("\n") + "\n",
        );
      if (r.diff.length > 0) ctx.exitCode = 1;
    });
  return cmd;
}
