/**
 * Gateway API and Ingress resources over the API (controllers/gateways.ts):
 *
 *   POST   /v1/gateway            {text, file}   apply (the whole file, or nothing)
 *   DELETE /v1/gateway            {text, file}   delete the resources the file names
 *   GET    /v1/gateway?kinds=A,B                 each resource with its status
 *
 * With the gateway off (`membrane agent` without --gateway) every call says so.
 */
import { MembraneError } from "../../errors.js";
import type { GatewaysController } from "../controllers/gateways.js";
import { fields, string } from "./body.js";
import type { ApiRequest, Route } from "./router.js";

function file(req: ApiRequest): { text: string; file: string } {
  const b = fields(req, { text: "required", file: "required" });
  return { text: string(req, b, "text", 1 << 20), file: string(req, b, "file", 4096) };
}

export function gatewayRoutes(gateways: () => GatewaysController | undefined): Route[] {
  const on = (): GatewaysController => {
    const g = gateways();
    if (!g)
      throw new MembraneError(
        "API_REQUEST_INVALID",
        "Cannot handle Gateway API or Ingress resources: the agent's gateway is off",
        {
          hint: "start the agent with --gateway",
        },
      );
    return g;
  };
  return [
    { method: "POST", path: "/v1/gateway", handler: (req) => on().apply(file(req).text, file(req).file) },
    {
      method: "DELETE",
      path: "/v1/gateway",
      handler: (req) => on().apply(file(req).text, file(req).file, true),
    },
    {
      method: "GET",
      path: "/v1/gateway",
      handler: (req) => {
        const kinds = req.query.get("kinds");
        return { address: on().address, resources: on().list(kinds ? kinds.split(",") : undefined) };
      },
    },
  ];
}
