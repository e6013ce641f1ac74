/** `membrane apply -f` and `membrane delete -f`: policies through the agent. */
import { Command } from "commander";
import type { ApplyReport } from "../../agent/agent.js";
import { parsePolicies, warningText } from "../../policy/api/index.js";
import { tracingFile, applyTracing } from "./apply-tracing.js";
import type { CliContext } from "../context.js";
import { client, outputOption, readInput, show, socketOption, type ViewFormat } from "../agent-client.js";

const KIND_SHORT: Record<string, string> = {
  CiliumNetworkPolicy: "cnp",
  CiliumClusterwideNetworkPolicy: "ccnp",
  NetworkPolicy: "netpol",
};

function report(ctx: CliContext, format: ViewFormat, r: ApplyReport): void {
  show(ctx, format, r, () =>
    r.policies.map((p) => [
      `${KIND_SHORT[p.kind] ?? p.kind}/${p.namespace ? p.namespace + "/" : ""}${p.name}`,
      p.status,
    ]),
  );
  if (format !== "table") return;
  if (r.policies.every((p) => p.status === "unchanged")) {
    ctx.out(`nothing changed (revision ${r.revision})\n`);
    return;
  }
  ctx.out(
    `enforced in ${r.enforcedMs} ms (revision ${r.revision}, ${r.endpointsChanged} endpoints recomputed, ${r.kernelOps} kernel changes)\n`,
  );
}

export function applyCommand(ctx: CliContext): Command {
  return new Command("apply")
    .description(
      "apply CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy / NetworkPolicy, or TracingPolicy / TracingPolicyNamespaced YAML (rejected whole if any document is invalid)",
    )
    .requiredOption("-f, --filename <file>", "policy file, or - for standard input")
    .option("--dry-run", "only validate, locally; change nothing")
    .addOption(socketOption())
    .addOption(outputOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ membrane apply -f examples/policies/sw-l3-l4.yaml\n  $ cat examples/policies/sw-l7.yaml | membrane apply -f -\n",
    )
    .action(async (o: { filename: string; dryRun?: boolean; socket: string; output: ViewFormat }) => {
      const { text, name } = readInput(o.filename);
      if (tracingFile(text, name)) return applyTracing(ctx, o, text, name, "POST");
      // Validate locally first: errors name file:line:path; warnings go to stderr.
      const resources = parsePolicies(text, name, { onWarning: (w) => ctx.err(warningText(w) + "\n") });
      if (o.dryRun) {
        ctx.out(`${name}: ${resources.length} policies valid (dry run, nothing applied)\n`);
        return;
      }
      report(
        ctx,
        o.output,
        (await client(o).request("POST", "/v1/policies", { text, file: name })) as ApplyReport,
      );
    });
}

export function deleteCommand(ctx: CliContext): Command {
  return new Command("delete")
    .description("delete the policies a file names")
    .requiredOption("-f, --filename <file>", "policy file, or - for standard input")
    .addOption(socketOption())
    .addOption(outputOption())
    .action(async (o: { filename: string; socket: string; output: ViewFormat }) => {
      const { text, name } = readInput(o.filename);
      if (tracingFile(text, name)) return applyTracing(ctx, o, text, name, "DELETE");
      report(
        ctx,
        o.output,
        (await client(o).request("DELETE", "/v1/policies", { text, file: name })) as ApplyReport,
      );
    });
}
