/**
 * Services in the kernel over the API (controllers/lb.ts):
 *
 *   POST   /v1/lb/resources   {text, file}   apply Service / EndpointSlice YAML (the whole file, or nothing)
 *   DELETE /v1/lb/resources   {text, file}   delete the Services / EndpointSlices the file names
 *   GET    /v1/lb/services                   each service: addresses, ports, backends with their state
 *
 * Cluster mode under the least-privilege roles (cluster/etcd-setup.ts) no node may write Services:
 * etcd's refusal is answered with the command that applies them as the cluster's admin.
 */
import { ADMIN_USER, deniedByRole } from "../../cluster/etcd-setup.js";
import { MembraneError } from "../../errors.js";
import type { LbController, LbApplyReport } from "../controllers/lb.js";
import { clusterResources, type ClusterResources } from "../../cluster/resources.js";
import { fields, string } from "./body.js";
import type { ApiRequest, Route } from "./router.js";

function file(req: ApiRequest): { text: string; file: string } {
  const b = fields(req, { text: "required", file: "required" });
  return { text: string(req, b, "text", 4 << 20), file: string(req, b, "file", 4096) };
}

/** `cluster`: in cluster mode, answers carry the etcd revision `apply --wait` waits for. */
export function lbRoutes(lb: () => LbController, cluster: () => ClusterResources | undefined): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/lb/resources",
      handler: (req) =>
        clusterResources.revision(cluster(), adminOnly(lb().apply(file(req).text, file(req).file))),
    },
    {
      method: "DELETE",
      path: "/v1/lb/resources",
      handler: (req) =>
        clusterResources.revision(cluster(), adminOnly(lb().delete(file(req).text, file(req).file))),
    },
    { method: "GET", path: "/v1/lb/services", handler: () => lb().list() },
  ];
}

/** etcd's "permission denied" (the node's role may not write cluster/lb/) said with what to do instead. */
export async function adminOnly(p: Promise<LbApplyReport>): Promise<LbApplyReport> {
  try {
    return await p;
  } catch (e) {
    if (!deniedByRole(e)) throw e;
    throw new MembraneError(
      "CLUSTER_UNAVAILABLE",
      "Cannot apply Services or EndpointSlices through this node: the cluster store lets no node write them (least-privilege roles of `membrane cluster etcd-setup`); nothing was changed",
      {
        cause: e,
        hint: `apply them as the cluster's admin, straight to etcd: membrane apply -f FILE --cluster-store etcd://HOST:PORT --etcd-username ${ADMIN_USER} --etcd-password-file ${ADMIN_USER}.password`,
      },
    );
  }
}
