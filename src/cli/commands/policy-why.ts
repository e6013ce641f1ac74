/** `membrane policy why`: explain a recent drop and propose the smallest policy change. */
import { Command } from "commander";
import { filterFromFlags, formatCompact, type Flow, type ObserveFlags } from "../../observe/index.js";
import type { WhyAnswer } from "../../policy/why.js";
import type { CliContext } from "../context.js";
import { client, socketOption } from "../agent-client.js";

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export function policyWhyCommand(ctx: CliContext): Command {
  return new Command("why")
    .description(
      "explain the most recent drop (matching the filters) in words, and propose the smallest policy change that would allow it",
    )
    .option("--pod <pod>", "[namespace/]name on either side (repeatable)", collect)
    .option("--from-pod <pod>", "source pod (repeatable)", collect)
    .option("--to-pod <pod>", "destination pod (repeatable)", collect)
    .option("--namespace <ns>", "namespace (repeatable)", collect)
    .option("--port <port>", "port on either side (repeatable)", collect)
    .option("--to-port <port>", "destination port (repeatable)", collect)
    .option("--since <time>", "only drops since an RFC 3339 time or a duration ago (5m)")
    .option(
      "-t, --type <type>",
      "event type: l7 (the proxy's 403s, REFUSED, ...), drop, policy-verdict (repeatable)",
      collect,
    )
    .option("-o, --output <format>", "text | json", "text")
    .addOption(socketOption())
    .addHelpText(
      "after",
      `
The proposal is checked against a copy of the agent's policy state before it is shown: it
says whether the flow would then be allowed. A drop by a deny rule gets no allow proposal
(deny rules win over every allow); it names the deny rule instead.

Examples:
  $ membrane policy why --to-pod default/deathstar
  $ membrane policy why --from-pod xwing --port 80 > allow.yaml
  $ membrane policy why --type l7 --to-pod deathstar      # why did the proxy answer 403?
`,
    )
    .action(async (o: ObserveFlags & { output: string; socket: string }) => {
      const req = filterFromFlags(o);
      const a = (await client(o).request("POST", "/v1/why", req)) as WhyAnswer & { flow: Flow };
      if (o.output === "json") {
        ctx.out(JSON.stringify(a, null, 2) + "\n");
        return;
      }
      ctx.out(`Flow: ${formatCompact({ flow: a.flow, time: a.flow.time })}\n\n`);
      ctx.out(a.lines.join("\n") + "\n");
      if (a.proposal) ctx.out("\n" + a.proposal);
    });
}
