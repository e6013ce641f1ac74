/**
 * `membrane apply|delete -f` of a file of `v1` Service / `discovery.k8s.io/v1`
 * EndpointSlice documents: validated locally (the parser the agent runs), then
 * sent to /v1/lb/resources. A file mixing them with policies is refused (a file
 * is applied whole or not at all, and they go to different controllers).
 * `membrane get services` shows the result (serviceRows).
 */
import type { LbApplyReport } from "../../agent/controllers/lb.js";
import { parseLbResources } from "../../lb/parse.js";
import type { ServiceView } from "../../lb/types.js";
import type { CliContext } from "../context.js";
import { client, show, type ViewFormat } from "../agent-client.js";

export async function applyLb(
  ctx: CliContext,
  o: { dryRun?: boolean; socket: string; output: ViewFormat },
  text: string,
  file: string,
  method: "POST" | "DELETE",
): Promise<void> {
  const r = parseLbResources(text, file);
  if (o.dryRun) {
    ctx.out(
      `${file}: ${r.services.length} services, ${r.slices.length} endpoint slices valid (dry run, nothing applied)\n`,
    );
    return;
  }
  const rep = (await client(o).request(method, "/v1/lb/resources", { text, file })) as LbApplyReport;
  show(ctx, o.output, rep, () =>
    rep.resources.map((x) => [`${x.kind === "Service" ? "service" : "endpointslice"}/${x.name}`, x.status]),
  );
}

export function serviceRows(vs: readonly ServiceView[]): string[][] {
  return [
    ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AFFINITY", "BACKENDS"],
    ...vs.map((v) => [
      v.namespace,
      v.name,
      v.type,
      v.clusterIP || "None",
      v.externalIP ?? "<none>",
      v.ports.join(","),
      v.affinity,
      v.backends.map((b) => (b.state === "active" ? b.address : `${b.address} (${b.state})`)).join(",") ||
        "<none>",
    ]),
  ];
}
