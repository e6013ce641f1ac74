/** `membrane ui`: the service map of one host's flows in a browser (src/ui/). */
import { Command } from "commander";
import { MembraneError } from "../../errors.js";
import { UiServer } from "../../ui/server.js";
import type { CliContext } from "../context.js";
import { client, socketOption } from "../agent-client.js";
import { serverAddress, tlsOf } from "./observe-server.js";

/** `HOST:PORT` or `[V6]:PORT`; the port may be 0 (any free one). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new MembraneError("CLI_USAGE", `Cannot listen on "${v}": write HOST:PORT, e.g. 127.0.0.1:12000`, {
      location: { path: "--listen" },
    });
  return { host: (m[1] ?? m[2]) as string, port };
}

interface UiFlags {
  listen: string;
  history: string;
  socket: string;
  server?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

export function uiCommand(ctx: CliContext): Command {
  return new Command("ui")
    .description(
      "serve the service map (workloads, edges from flows, denied edges in red, drill-down) in a browser",
    )
    .option(
      "--listen <host:port>",
      "address of the page (keep it on localhost: it shows workloads and policies)",
      "127.0.0.1:12000",
    )
    .option("--history <n>", "flows of the agent's ring drawn at start (the rest arrive live)", "10000")
    .option(
      "--server <addr>",
      "read flows from a Hubble Observer API instead of the agent: `relay` (the whole cluster), unix:/path or host:port",
    )
    .option("--tls-ca <file>", "--server over TCP: the CA of the server's certificate")
    .option("--tls-cert <file>", "--server over TCP: a client certificate (mutual TLS)")
    .option("--tls-key <file>", "--server over TCP: the client certificate's key")
    .option("--tls-server-name <name>", "--server over TCP: the name the server's certificate carries")
    .addOption(socketOption())
    .addHelpText(
      "after",
      `
The page is served until interrupted (Ctrl-C). Open the address it prints.

Examples:
  $ membrane ui                                  # then open http://127.0.0.1:12000/
  $ membrane ui --listen 127.0.0.1:0 --history 500
  $ membrane ui --server relay                   # every node's flows, through \`membrane relay\`

With --server, "why was this dropped?" still asks the agent on this host (--socket) when it runs;
otherwise the drill-down says to run \`membrane why\` on the node that dropped the flow.
`,
    )
    .action(async (o: UiFlags) => {
      const { host, port } = parseListen(o.listen);
      const history = Number(o.history);
      if (!Number.isInteger(history) || history < 0 || history > 1_000_000)
        throw new MembraneError(
          "CLI_USAGE",
          `Cannot use --history ${o.history}: give a count from 0 to 1000000`,
        );
      const tls = tlsOf(o);
      const hubble =
        o.server === undefined
          ? {}
          : { hubble: { address: serverAddress(o.server), ...(tls !== undefined ? { tls } : {}) } };
      const ui = new UiServer({ agent: client(o), host, port, history, ...hubble });
      const url = await ui.start();
      ctx.out(`service map at ${url} (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      await ui.stop();
    });
}
