/**
 * `membrane runtime events`: process events of the node's workloads
 * (process_exec, process_exit, and the TracingPolicy events), filtered in the
 * agent; `-o json` prints Tetragon's JSON lines (what `tetra getevents -o json` reads).
 */
import { Command } from "commander";
import { MembraneError } from "../../errors.js";
import { RUNTIME_EVENT_TYPES, type RuntimeEvent } from "../../runtime/events.js";
import { formatRuntimeCompact, formatRuntimeJson } from "../../runtime/printer.js";
import type { RuntimeFilter } from "../../runtime/ring.js";
import type { CliContext } from "../context.js";
import { client, socketOption } from "../agent-client.js";

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

interface Flags {
  follow?: boolean;
  last?: string;
  output: string;
  endpoint?: string[];
  binary?: string[];
  type?: string[];
  policy?: string[];
  action?: string[];
  socket: string;
}

function filterOf(o: Flags): RuntimeFilter {
  const types = (o.type ?? []).map((t) => (t.startsWith("process_") ? t : `process_${t}`));
  for (const t of types)
    if (!(RUNTIME_EVENT_TYPES as readonly string[]).includes(t))
      throw new MembraneError(
        "CLI_USAGE",
        `Cannot filter by --type ${t}: not one of exec, exit, kprobe, tracepoint, uprobe`,
      );
  const endpoints = (o.endpoint ?? []).map((e) => (e === "host" || e.includes("/") ? e : `default/${e}`));
  return {
    ...(types.length ? { types: types as NonNullable<RuntimeFilter["types"]> } : {}),
    ...(endpoints.length ? { endpoints } : {}),
    ...(o.binary?.length ? { binaries: o.binary } : {}),
    ...(o.policy?.length ? { policies: o.policy } : {}),
    ...(o.action?.length ? { actions: o.action } : {}),
  };
}

export function runtimeCommand(ctx: CliContext): Command {
  const events = new Command("events")
    .description("show process events (exec, exit, TracingPolicy hits) per endpoint, in Tetragon's format")
    .option("-f, --follow", "keep printing new events")
    .option("--last <n>", "the last N matching events (default 20 without --follow)")
    .option("-o, --output <format>", "compact | json (Tetragon JSON lines)", "compact")
    .option(
      "--endpoint <[namespace/]name>",
      "an endpoint's processes, or `host` for the node's own (repeatable)",
      collect,
    )
    .option("--binary <text>", "binaries whose path contains this (repeatable)", collect)
    .option("--type <type>", "exec | exit | kprobe | tracepoint | uprobe (repeatable)", collect)
    .option("--policy <name>", "events of this TracingPolicy (repeatable)", collect)
    .option("--action <action>", "events with this action, e.g. sigkill (repeatable)", collect)
    .addOption(socketOption())
    .addHelpText(
      "after",
      `
The agent records runtime events when started with --runtime-events.

Examples:
  $ membrane runtime events --endpoint default/web --type exec
  $ membrane runtime events --follow --binary /bin/sh
  $ membrane runtime events --last 1000 -o json > events.json    # Tetragon's JSON lines
`,
    )
    .action(async (o: Flags) => {
      if (o.output !== "compact" && o.output !== "json")
        throw new MembraneError("CLI_USAGE", `Cannot print as -o ${o.output}: use compact or json`);
      const fmt = o.output === "json" ? formatRuntimeJson : formatRuntimeCompact;
      let number: number | undefined;
      if (o.last !== undefined) {
        number = Number(o.last);
        if (!Number.isInteger(number) || number < 0)
          throw new MembraneError("CLI_USAGE", `Cannot use --last ${o.last}: give a whole number`);
      } else if (!o.follow) number = 20;
      const req = { filter: filterOf(o), ...(number !== undefined ? { number } : {}) };
      const c = client(o);
      if (!o.follow) {
        const evs = (await c.request("POST", "/v1/runtime/events", req)) as RuntimeEvent[];
        for (const e of evs) ctx.out(fmt(e) + "\n");
        return;
      }
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      await c
        .stream(
          "POST",
          "/v1/runtime/events/follow",
          req,
          (item) => ctx.out(fmt(item as RuntimeEvent) + "\n"),
          ac.signal,
        )
        .catch((e: unknown) => {
          if (!ac.signal.aborted) throw e;
        });
    });
  return new Command("runtime")
    .description("runtime security: process events per workload")
    .addCommand(events);
}
