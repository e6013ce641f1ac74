/**
 * `membrane apply|delete -f` of a file of TracingPolicy / TracingPolicyNamespaced
 * documents: validated locally (same parser as the agent), then sent to
 * /v1/tracingpolicies. A file mixing tracing and network policies is refused:
 * they go to different enforcers, and a file is applied whole or not at all.
 */
import { MembraneError } from "../../errors.js";
import type { TracingPolicyStatus } from "../../runtime/enforce/enforcer.js";
import { documentKinds, isTracingKind, parseTracingPolicies } from "../../runtime/policy/parse.js";
import type { CliContext } from "../context.js";
import { client, show, type ViewFormat } from "../agent-client.js";

/** True when every document is a tracing policy; throws CLI_USAGE for a mixed file. */
export function tracingFile(text: string, file: string): boolean {
  const kinds = documentKinds(text, file);
  const tracing = kinds.filter(isTracingKind).length;
  if (tracing === 0) return false;
  if (tracing < kinds.length)
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot apply ${file}: it mixes TracingPolicy documents with other kinds`,
      { hint: "put tracing policies and network policies in separate files" },
    );
  return true;
}

export function tracingRows(ps: readonly TracingPolicyStatus[]): string[][] {
  return [
    [
      "KIND",
      "NAMESPACE",
      "NAME",
      "STATE",
      "ENDPOINTS",
      "PROBES",
      "EVENTS",
      "KILLS",
      "DENIED",
      "LOST",
      "ERROR",
    ],
    ...ps.map((p) => [
      p.kind,
      p.namespace ?? "-",
      p.name,
      p.state,
      p.state === "loaded" && p.endpoints === 0 ? "node" : String(p.endpoints),
      String(p.probes),
      String(p.events),
      String(p.kills),
      String(p.denials),
      String(p.lost.kernel + p.lost.agent),
      p.error ?? "-",
    ]),
  ];
}

export async function applyTracing(
  ctx: CliContext,
  o: { dryRun?: boolean; socket: string; output: ViewFormat },
  text: string,
  file: string,
  method: "POST" | "DELETE",
): Promise<void> {
  const ps = parseTracingPolicies(text, file);
  if (o.dryRun) {
    ctx.out(`${file}: ${ps.length} tracing policies valid (dry run, nothing applied)\n`);
    return;
  }
  const r = (await client(o).request(method, "/v1/tracingpolicies", { text, file })) as {
    policies: TracingPolicyStatus[];
  };
  show(ctx, o.output, r, () =>
    r.policies.map((p) => [
      `${p.kind === "TracingPolicy" ? "tp" : "tpn"}/${p.namespace ? p.namespace + "/" : ""}${p.name}`,
      method === "DELETE" ? "deleted" : p.state,
    ]),
  );
}
