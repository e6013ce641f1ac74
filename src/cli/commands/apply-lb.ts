/**
 * `membrane apply|delete -f` of a file of `v1` Service / `discovery.k8s.io/v1`
 * EndpointSlice documents: validated locally (the parser the agent runs), then
 * sent to /v1/lb/resources. A file mixing them with policies is refused (a file
 * is applied whole or not at all, and they go to different controllers). With
 * --cluster-store: straight to etcd as the cluster's admin (apply-lb-cluster.ts).
 * `membrane get services` shows the result (serviceRows).
 */
import type { LbApplyReport } from "../../agent/controllers/lb.js";
import { parseLbResources } from "../../lb/parse.js";
import type { ServiceView } from "../../lb/types.js";
import type { CliContext } from "../context.js";
import { client, show, type ViewFormat } from "../agent-client.js";
import { ADMIN_USER, deniedByRole } from "../../cluster/etcd-setup.js";
import { MembraneError } from "../../errors.js";
import type { NodeRealized } from "../../cluster/realized.js";
import { openClusterStore, readRealized, waitAndShow, type ClusterStoreOptions } from "./apply-cluster.js";
import { applyLbToCluster, givenLbFlag, type LbAllocFlags } from "./apply-lb-cluster.js";

export async function applyLb(
  ctx: CliContext,
  o: ClusterStoreOptions &
    LbAllocFlags & {
      dryRun?: boolean;
      socket: string;
      output: ViewFormat;
      wait?: boolean;
      timeout: string;
    },
  text: string,
  file: string,
  method: "POST" | "DELETE",
): Promise<void> {
  const r = parseLbResources(text, file);
  const given = givenLbFlag(o);
  if (given !== undefined && o.clusterStore === undefined)
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use ${given} without --cluster-store: an agent allocates from its own flags`,
    );
  if (o.dryRun) {
    ctx.out(
      `${file}: ${r.services.length} services, ${r.slices.length} endpoint slices valid (dry run, nothing applied)\n`,
    );
    return;
  }
  const show_ = (rep: LbApplyReport): void =>
    show(ctx, o.output, rep, () =>
      rep.resources.map((x) => [`${x.kind === "Service" ? "service" : "endpointslice"}/${x.name}`, x.status]),
    );
  if (o.clusterStore !== undefined) {
    // As the cluster's admin, straight to etcd (the least-privilege roles let no node write Services).
    const kv = openClusterStore(o);
    try {
      const rep = await applyLbToCluster(kv, r, method === "POST" ? "apply" : "delete", o).catch(
        (e: unknown) => {
          throw deniedByRole(e) ? notAdmin(e, o.etcdUsername, kv.prefix) : e;
        },
      );
      show_(rep);
      if (o.wait) await waitAndShow(ctx, o.output, () => readRealized(kv), rep.clusterRevision, o.timeout);
    } finally {
      await kv.close();
    }
    return;
  }
  const c = client(o);
  const rep = (await c.request(method, "/v1/lb/resources", { text, file })) as LbApplyReport;
  show_(rep);
  const nodes = async (): Promise<NodeRealized[]> =>
    ((await c.request("GET", "/v1/cluster/realized")) as { nodes: NodeRealized[] }).nodes;
  if (o.wait) await waitAndShow(ctx, o.output, nodes, rep.clusterRevision, o.timeout);
}

/** etcd refused the write: said with who may write Services, and the grant an older admin role lacks. */
function notAdmin(e: unknown, user: string | undefined, prefix: string): MembraneError {
  const keys = ["lb/services/", "lb/slices/", "lb/alloc/"].map((k) => `${prefix}cluster/${k}`);
  return new MembraneError(
    "CLUSTER_UNAVAILABLE",
    `Cannot apply Services to the cluster store as ${user ?? "this client"}: etcd says permission denied on ${keys.join(", ")} (only ${ADMIN_USER} may write them; a role made by an older \`membrane cluster etcd-setup\` lacks them); nothing was changed`,
    { cause: e, hint: `use --etcd-username ${ADMIN_USER}, or grant its role with etcd's root credentials: ${keys.map((k) => `etcdctl role grant-permission --prefix ${ADMIN_USER} readwrite ${k}`).join("; ")}` }, // prettier-ignore
  );
}

export function serviceRows(vs: readonly ServiceView[]): string[][] {
  return [
    ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AFFINITY", "BACKENDS"],
    ...vs.map((v) => [
      v.namespace,
      v.name,
      v.type,
      v.clusterIPs?.join(",") ?? (v.clusterIP || "None"),
      v.externalIP ?? "<none>",
      v.ports.join(",") + (v.healthCheckNodePort !== undefined ? ` (health ${v.healthCheckNodePort}/TCP: ${v.localEndpoints ?? 0} local)` : ""), // prettier-ignore
      v.affinity,
      v.backends.map((b) => (b.state === "active" ? b.address : `${b.address} (${b.state})`)).join(",") ||
        "<none>",
    ]),
  ];
}
