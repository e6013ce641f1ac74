/** `membrane policy ...`: offline work on policies (test, trace). */
import { Command } from "commander";
import type { CliContext } from "../context.js";
import { policyTestCommand } from "./policy-test.js";
import { policyTraceCommand } from "./policy-trace.js";
import { policyWhyCommand } from "./policy-why.js";

export function policyCommand(ctx: CliContext): Command {
  return new Command("policy")
    .description("test and explain network policies (offline), and explain drops the agent saw")
    .addCommand(policyTestCommand(ctx))
    .addCommand(policyTraceCommand(ctx))
    .addCommand(policyWhyCommand(ctx))
    .addHelpText(
      "after",
      `
Examples:
  $ membrane policy test examples/
  $ membrane policy trace --endpoints examples/starwars/sw-l3-l4.yaml --from xwing --to deathstar --port 80
`,
    );
}
