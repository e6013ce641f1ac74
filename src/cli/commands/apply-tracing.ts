/**
 * `membrane apply|delete -f` of a file of TracingPolicy / TracingPolicyNamespaced
 * documents: validated locally (same parser as the agent), then sent to
 * /v1/tracingpolicies. A file mixing tracing and network policies is refused:
 * they go to different enforcers, and a file is applied whole or not at all.
 */
import type { TracingPolicyStatus } from "../../runtime/enforce/enforcer.js";
import { parseTracingPolicies } from "../../runtime/policy/parse.js";
import type { CliContext } from "../context.js";
import { client, show, type ViewFormat } from "../agent-client.js";

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
