/**
 * What agent-facing commands share: the API client from `--socket`, output
 * in table/json/yaml, reading `-f FILE|-`, and parsing `k=v,...` labels.
 */
import { Option } from "commander";
import { stringify } from "yaml";
import { AgentClient, DEFAULT_SOCKET } from "../agent/client.js";
import { MembraneError } from "../errors.js";
import type { CliContext } from "./context.js";
import { readInputFile } from "./files.js";
import { table, toJson } from "./format.js";

export type ViewFormat = "table" | "json" | "yaml";

export const socketOption = (): Option =>
  new Option("--socket <path>", "the agent's API socket").default(
    process.env["MEMBRANE_SOCKET"] ?? DEFAULT_SOCKET,
  );

export const outputOption = (): Option =>
  new Option("-o, --output <format>", "output format").choices(["table", "json", "yaml"]).default("table");

export function client(opts: { socket: string }): AgentClient {
  return new AgentClient({ socketPath: opts.socket });
}

/** Prints rows as a table, or the raw value as JSON / YAML. */
export function show(ctx: CliContext, format: ViewFormat, value: unknown, rows: () => string[][]): void {
  if (format === "json") ctx.out(toJson(value));
  else if (format === "yaml") ctx.out(stringify(value));
  else ctx.out(table(rows()).join("\n") + "\n");
}

/** Reads `-f FILE` or `-f -` (standard input), at most LIMITS.bytes (policy/api/limits.ts). */
export function readInput(file: string): { text: string; name: string } {
  return { text: readInputFile(file), name: file === "-" ? "<stdin>" : file };
}

/** `app=web,tier=db` or several arguments `app=web tier=db`; `key-` removes a key (value ""). */
export function parseLabelArgs(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of args.flatMap((a) => a.split(",")).filter((s) => s !== "")) {
    if (part.endsWith("-") && !part.includes("=")) {
      out[part.slice(0, -1)] = "";
      continue;
    }
    const eq = part.indexOf("=");
    if (eq <= 0)
      throw new MembraneError(
        "CLI_USAGE",
        `Cannot read label "${part}": write key=value (or key- to remove)`,
      );
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}
