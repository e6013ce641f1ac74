/**
 * TracingPolicies over the API (controllers/tracing-policies.ts):
 *
 *   POST   /v1/tracingpolicies        {text, file}   apply (the whole file, or nothing)
 *   DELETE /v1/tracingpolicies        {text, file}   delete the policies the file names
 *   GET    /v1/tracingpolicies                       each with its state (loaded / idle / error)
 *   GET    /v1/tracingpolicies/events                the recent policy events
 */
import type { TracingPoliciesController } from "../controllers/tracing-policies.js";
import { fields, string } from "./body.js";
import type { ApiRequest, Route } from "./router.js";

function file(req: ApiRequest): { text: string; file: string } {
  const b = fields(req, { text: "required", file: "required" });
  return { text: string(req, b, "text", 1 << 20), file: string(req, b, "file", 4096) };
}

export function tracingRoutes(tracing: () => TracingPoliciesController): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/tracingpolicies",
      handler: (req) => {
        const f = file(req);
        return tracing().apply(f.text, f.file);
      },
    },
    {
      method: "DELETE",
      path: "/v1/tracingpolicies",
      handler: (req) => {
        const f = file(req);
        return tracing().delete(f.text, f.file);
      },
    },
    { method: "GET", path: "/v1/tracingpolicies", handler: () => tracing().list() },
    {
      method: "GET",
      path: "/v1/tracingpolicies/events",
      handler: () =>
        tracing()
          .recent()
          .map((e) => ({ ...e, ktimeNs: e.ktimeNs.toString() })),
    },
  ];
}
