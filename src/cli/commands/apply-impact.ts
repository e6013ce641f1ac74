/**
 * `membrane apply --dry-run --impact -f FILE` (and `membrane delete --dry-run
 * --impact -f FILE`): the connections the agent's flow ring saw, judged again
 * as if the file were applied (or deleted), with the real engine on a copy of
 * the agent's policy state (POST /v1/impact, policy/impact.ts). Nothing is
 * applied. Lists what would change: allowed -> denied first, then denied ->
 * allowed, grouped by source, destination and port, with the rule responsible.
 */
import type { Option } from "commander";
import { Option as CliOption } from "commander";
import { filterFromFlags } from "../../observe/index.js";
import type { ImpactChange, ImpactReport } from "../../policy/impact.js";
import { table } from "../format.js";
import type { CliContext } from "../context.js";
import { client, type ViewFormat } from "../agent-client.js";
import { MembraneError } from "../../errors.js";

export interface ImpactFlags {
  impact?: boolean;
  last?: string;
  since?: string;
  socket: string;
  output: ViewFormat;
}

/** The options `apply` and `delete` take for --impact. */
export function impactOptions(): Option[] {
  return [
    new CliOption(
      "--impact",
      "with --dry-run: replay the connections the agent saw against the policies as they would be after this change, and list the verdicts that would change",
    ),
    new CliOption("--last <n>", "with --impact: only the N most recent flows (default: the whole flow ring)"),
    new CliOption(
      "--since <time>",
      "with --impact: only flows since an RFC 3339 time or a duration ago (1h)",
    ),
  ];
}

export async function showImpact(
  ctx: CliContext,
  o: ImpactFlags & { dryRun?: boolean },
  text: string,
  file: string,
  remove: boolean,
): Promise<void> {
  if (!o.dryRun)
    throw new MembraneError("CLI_USAGE", "Cannot use --impact without --dry-run: it never applies anything", {
      hint: `run \`membrane ${remove ? "delete" : "apply"} --dry-run --impact -f ${file}\``,
    });
  const req = filterFromFlags({
    ...(o.last !== undefined ? { last: o.last } : {}),
    ...(o.since !== undefined ? { since: o.since } : {}),
  });
  const r = (await client(o).request("POST", "/v1/impact", {
    text,
    file,
    ...(remove ? { delete: true } : {}),
    filter: req.filter,
    ...(req.number !== undefined ? { number: req.number } : {}),
    ...(req.since !== undefined ? { since: req.since } : {}),
  })) as ImpactReport & { flowsRead: number };
  if (o.output === "json") {
    ctx.out(JSON.stringify(r, null, 2) + "\n");
    return;
  }
  if (o.output === "yaml") {
    const { stringify } = await import("yaml");
    ctx.out(stringify(r));
    return;
  }
  const what = remove ? "deleting" : "applying";
  ctx.out(
    `${what} ${file} (dry run, nothing changed): ${r.flowsRead} flows read, ${r.connections} connections judged, ` +
      `${r.unchanged} unchanged, ${r.allowedToDenied.length} would be denied, ${r.deniedToAllowed.length} would be allowed\n`,
  );
  section(ctx, "Would be DENIED (allowed now):", r.allowedToDenied);
  section(ctx, "Would be ALLOWED (denied now):", r.deniedToAllowed);
  for (const s of r.skipped) ctx.out(`\nnot judged: ${s.connections} connections (${s.reason})\n`);
}

function section(ctx: CliContext, title: string, changes: readonly ImpactChange[]): void {
  if (changes.length === 0) return;
  ctx.out(`\n${title}\n`);
  const rows = [["SOURCE", "DESTINATION", "PORT", "L7", "FLOWS", "LAST SEEN", "RESPONSIBLE"]];
  for (const c of changes)
    rows.push([
      c.from,
      c.to,
      c.port,
      c.l7 ?? "-",
      String(c.flows),
      c.lastSeen ?? "-",
      c.responsible.join("; ") || "-",
    ]);
  ctx.out(table(rows).join("\n") + "\n");
}
