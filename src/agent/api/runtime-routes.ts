/**
 * Runtime events (controllers/runtime.ts):
 *   POST /v1/runtime/events        {filter?, number?}   events from the ring (one JSON array)
 *   POST /v1/runtime/events/follow {filter?, number?}   the backlog, then new events (NDJSON)
 *   GET  /v1/runtime/status                             counters (written, lost, malformed, ...)
 */
import { MembraneError } from "../../errors.js";
import type { RuntimeController } from "../controllers/runtime.js";
import { checkFilter, type RuntimeQuery } from "../../runtime/ring.js";
import { fields, type Body } from "./body.js";
import type { ApiRequest, Route } from "./router.js";

function query(req: ApiRequest): RuntimeQuery {
  const b: Body = fields(req, { filter: "optional", number: "optional" });
  const n = b["number"];
  if (n !== undefined && (!Number.isInteger(n) || (n as number) < 0 || (n as number) > 1_000_000))
    throw new MembraneError(
      "API_REQUEST_INVALID",
      "Cannot read the runtime events request: number must be a whole number 0..1000000",
    );
  return { filter: checkFilter(b["filter"]), ...(n !== undefined ? { number: n as number } : {}) };
}

export function runtimeRoutes(runtime: () => RuntimeController | undefined): Route[] {
  const rt = (): RuntimeController => {
    const r = runtime();
    if (!r)
      throw new MembraneError(
        "API_FAILED",
        "Cannot show runtime events: runtime events are off on this agent",
        {
          hint: "start the agent with --runtime-events",
        },
      );
    return r;
  };
  return [
    { method: "POST", path: "/v1/runtime/events", handler: (req) => rt().read(query(req)) },
    { method: "GET", path: "/v1/runtime/status", handler: () => rt().status() },
    {
      kind: "stream",
      method: "POST",
      path: "/v1/runtime/events/follow",
      check: (req) => void (rt(), query(req)),
      handler: async (req, send) => {
        for await (const e of rt().ring.follow(query(req), req.signal)) if (!(await send(e))) break;
      },
    },
  ];
}
