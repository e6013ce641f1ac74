/**
 * Services in the kernel over the API (controllers/lb.ts):
 *
 *   POST   /v1/lb/resources   {text, file}   apply Service / EndpointSlice YAML (the whole file, or nothing)
 *   DELETE /v1/lb/resources   {text, file}   delete the Services / EndpointSlices the file names
 *   GET    /v1/lb/services                   each service: addresses, ports, backends with their state
 */
import type { LbController } from "../controllers/lb.js";
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
      handler: (req) => clusterResources.revision(cluster(), lb().apply(file(req).text, file(req).file)),
    },
    {
      method: "DELETE",
      path: "/v1/lb/resources",
      handler: (req) => clusterResources.revision(cluster(), lb().delete(file(req).text, file(req).file)),
    },
    { method: "GET", path: "/v1/lb/services", handler: () => lb().list() },
  ];
}
