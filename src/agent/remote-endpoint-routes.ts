/**
 * The API of remote endpoints (controllers/remote-endpoints.ts), bodies
 * checked field by field before anything runs:
 *
 *   PUT    /v1/remote-endpoints {endpoints: [{ip, namespace, labels?, serviceAccount?}, ...]}
 *   DELETE /v1/remote-endpoints {ips: [...]}
 *   GET    /v1/remote-endpoints
 */
import type { ApiRequest, Route } from "./api/router.js";
import { badField, fields, isObject, item, kindOf, list } from "./api/body.js";
import {
  REMOTE_ENDPOINTS_PER_REQUEST,
  type RemoteEndpointsController,
} from "./controllers/remote-endpoints.js";
import type { RemoteEndpointSpec } from "../policy/query.js";

/** `{key: "value", ...}` of at most 256 labels; absent = {}; errors name `endpoints[i].labels...`. */
function labels(req: ApiRequest, path: string, v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (!isObject(v))
    throw badField(req, `${path}.labels`, `must map label keys to string values, not ${kindOf(v)}`);
  const kv = Object.entries(v);
  if (kv.length > 256) throw badField(req, `${path}.labels`, "must have at most 256 entries");
  for (const [k, x] of kv) {
    if (typeof x !== "string")
      throw badField(req, `${path}.labels.${k}`, `must be a string value, not ${kindOf(x)}`);
  }
  return { ...(v as Record<string, string>) };
}

function entries(req: ApiRequest): RemoteEndpointSpec[] {
  const b = fields(req, { endpoints: "required" });
  return list(req, b, "endpoints", REMOTE_ENDPOINTS_PER_REQUEST).map((v, i) => {
    const path = `endpoints[${i}]`;
    const e = item(req, path, v, {
      ip: "required",
      namespace: "required",
      labels: "optional",
      serviceAccount: "optional",
    });
    const str = (k: string, max: number): string | undefined => {
      const x = e[k];
      if (x === undefined) return undefined;
      if (typeof x !== "string") throw badField(req, `${path}.${k}`, `must be a string, not ${kindOf(x)}`);
      if (x.length > max) throw badField(req, `${path}.${k}`, `must be at most ${max} characters`);
      return x;
    };
    const serviceAccount = str("serviceAccount", 253);
    return {
      ip: str("ip", 64) ?? "",
      namespace: str("namespace", 63) ?? "",
      labels: labels(req, path, e["labels"]),
      ...(serviceAccount !== undefined ? { serviceAccount } : {}),
    };
  });
}

export function remoteEndpointRoutes(c: RemoteEndpointsController): Route[] {
  return [
    { method: "GET", path: "/v1/remote-endpoints", handler: () => c.list() },
    { method: "PUT", path: "/v1/remote-endpoints", handler: (req) => c.upsert(entries(req), req.signal) },
    {
      method: "DELETE",
      path: "/v1/remote-endpoints",
      handler: (req) => {
        const b = fields(req, { ips: "required" });
        const ips = list(req, b, "ips", REMOTE_ENDPOINTS_PER_REQUEST).map((ip, i) => {
          if (typeof ip !== "string" || ip.length > 64)
            throw badField(req, `ips[${i}]`, `must be an address string, not ${kindOf(ip)}`);
          return ip;
        });
        return c.delete(ips, req.signal);
      },
    },
  ];
}
