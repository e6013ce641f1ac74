/**
 * The `membrane` command line: a thin frame over the core and the agent API.
 *
 *   argv --commander--> command action (src/cli/commands/*) --> stdout / stderr, exit code
 *
 * Exit codes: 0 success, 1 a check failed (e.g. a scenario query), 2 bad
 * usage or invalid input. Errors print `Error: <message>`, their issues
 * (file:line: path: message) and a hint; stacks only with --debug.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { escapeControls, isMembraneError } from "../errors.js";
import { agentCommand } from "./commands/agent.js";
import { clusterCommand } from "./commands/cluster.js";
import { applyCommand, deleteCommand } from "./commands/apply.js";
import { datapathCommand } from "./commands/datapath.js";
import { demoCommand } from "./commands/demo.js";
import { endpointCommand } from "./commands/endpoint.js";
import { encryptionCommand } from "./commands/encryption.js";
import { getCommand } from "./commands/get.js";
import { observeCommand } from "./commands/observe.js";
import { uiCommand } from "./commands/ui.js";
import { policyCommand } from "./commands/policy.js";
import { relayCommand } from "./commands/relay.js";
import { runtimeCommand } from "./commands/runtime.js";
import { authCommand } from "./commands/auth.js";
import { uninstallCommand } from "./commands/uninstall.js";
import { versionCommand } from "./commands/version.js";
import type { CliContext } from "./context.js";

const EXAMPLES = `
Exit codes: 0 success, 1 a check failed, 2 bad usage or invalid input.

Examples:
  $ membrane policy test examples/
  $ membrane policy trace --endpoints examples/starwars/sw-l7.yaml --from tiefighter --to deathstar \\
      --port 80 --method PUT --path /v1/exhaust-port
  $ sudo membrane demo
  $ sudo membrane agent &
  $ membrane endpoint create deathstar --labels org=empire,class=deathstar
  $ membrane apply -f examples/policies/sw-l3-l4.yaml
  $ membrane get endpoints
  $ membrane observe --verdict DROPPED
  $ membrane runtime events --endpoint default/deathstar
  $ membrane version
  $ membrane help policy test
`;

export function buildProgram(ctx: CliContext): Command {
  const program = new Command("membrane")
    .description(
      "identity-based zero-trust network security for Linux workloads (Cilium's policy model on nftables)",
    )
    .option("--debug", "show stack traces of errors")
    .version(ctx.version, "-V, --version", "print the version")
    .addHelpText("after", EXAMPLES)
    .configureOutput({ writeOut: (s) => ctx.out(s), writeErr: (s) => ctx.err(s) })
    .addCommand(policyCommand(ctx))
    .addCommand(demoCommand(ctx))
    .addCommand(agentCommand(ctx))
    .addCommand(clusterCommand(ctx))
    .addCommand(endpointCommand(ctx))
    .addCommand(authCommand(ctx))
    .addCommand(applyCommand(ctx))
    .addCommand(deleteCommand(ctx))
    .addCommand(getCommand(ctx))
    .addCommand(datapathCommand(ctx))
    .addCommand(observeCommand(ctx))
    .addCommand(relayCommand(ctx))
    .addCommand(uiCommand(ctx))
    .addCommand(encryptionCommand(ctx))
    .addCommand(runtimeCommand(ctx))
    .addCommand(uninstallCommand(ctx))
    .addCommand(versionCommand(ctx));
  applyToAll(program, (c) =>
    c
      .exitOverride()
      .showHelpAfterError("(add --help for usage)")
      .configureOutput({
        writeOut: (s) => ctx.out(s),
        writeErr: (s) => ctx.err(s),
        // commander quotes the arguments it refuses: escape them, keep its own line breaks.
        outputError: (s, write) => write(s.split("\n").map(escapeControls).join("\n")),
      }),
  );
  return program;
}

function applyToAll(c: Command, fn: (c: Command) => void): void {
  fn(c);
  for (const sub of c.commands) applyToAll(sub, fn);
}

export async function main(argv: string[]): Promise<void> {
  const ctx: CliContext = {
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    version: readVersion(),
    exitCode: 0,
  };
  const debug = argv.includes("--debug");
  // A reader that goes away (`membrane ... | head`) is not an error.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(ctx.exitCode);
    throw e;
  });
  try {
    await buildProgram(ctx).parseAsync(argv);
  } catch (e) {
    ctx.exitCode = handleError(e, ctx, debug);
  }
  process.exitCode = ctx.exitCode;
}

/** Prints an error the way users see it and returns the exit code. */
export function handleError(e: unknown, ctx: Pick<CliContext, "err">, debug: boolean): number {
  if (e instanceof CommanderError) {
    // commander has printed its message (or the help) already.
    return e.exitCode === 0 ? 0 : 2;
  }
  if (isMembraneError(e)) {
    ctx.err(`Error: ${e.describe()}\n`);
    if (debug && e.stack) ctx.err(e.stack + "\n");
    return 2;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  ctx.err(`Error: internal error: ${escapeControls(err.message)}\n`);
  ctx.err(
    debug ? (err.stack ?? "") + "\n" : "hint: run again with --debug for the stack trace, and report it\n",
  );
  return 2;
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}
