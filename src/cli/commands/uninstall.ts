/** `membrane uninstall`: remove what a stopped agent leaves on this node. */
import { Command, Option } from "commander";
import { DEFAULT_SOCKET } from "../../agent/client.js";
import { uninstall } from "../../agent/uninstall.js";
import type { CliContext } from "../context.js";
import { toJson } from "../format.js";

export function uninstallCommand(ctx: CliContext): Command {
  return new Command("uninstall")
    .description(
      "remove Membrane from this node once the agent is stopped: its nftables tables, routes and gateway addresses, the WireGuard interface and strict-mode table, the endpoint namespaces, the state and socket directories (needs root)",
    )
    .option("--state-dir <dir>", "the agent's --state-dir", "/var/lib/membrane")
    .option("--socket <path>", "the agent's --socket", DEFAULT_SOCKET)
    .option("--node-netns <name>", "the agent's --node-netns (default: the current namespace)")
    .option("--netns-prefix <prefix>", "the agent's --netns-prefix", "mbr-")
    .option("--table <name>", "the agent's --table", "membrane")
    .option("--pod-cidr <cidr>", "the agent's --pod-cidr", "10.200.0.0/24")
    .option("--pod-cidr6 <cidr>", "the agent's --pod-cidr6")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .addHelpText(
      "after",
      `
Give the same options the agent was started with. Refuses while an agent answers on the socket
(stopping the agent leaves enforcement in place; this takes it away). Removing what is already
gone is not an error. Stopped endpoint workloads lose their network.

Every option is checked before anything is removed: a bad one changes nothing. The state
directory is removed only when it holds what the agent writes there (store/ with the store's
files, and the agent's socket); anything else in it, or a symbolic link, is refused.

Examples:
  $ sudo membrane uninstall
  $ sudo membrane uninstall --node-netns node1 --state-dir /tmp/m1 --socket /tmp/m1/agent.sock -o json
`,
    )
    .action(async (o: Record<string, string | undefined>) => {
      const r = await uninstall({
        stateDir: o["stateDir"] as string,
        socketPath: o["socket"] as string,
        ...(o["nodeNetns"] ? { nodeNetns: o["nodeNetns"] } : {}),
        netnsPrefix: o["netnsPrefix"] as string,
        table: o["table"] as string,
        podCidr4: o["podCidr"] as string,
        ...(o["podCidr6"] ? { podCidr6: o["podCidr6"] } : {}),
      });
      if (o["output"] === "json") ctx.out(toJson(r));
      else if (r.removed.length === 0) ctx.out("nothing to remove: Membrane left nothing on this node\n");
      else ctx.out(r.removed.map((x) => `removed ${x}\n`).join(""));
    });
}
