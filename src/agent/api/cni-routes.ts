/**
 * The API membrane-cni calls (controllers/cni-attachments.ts), bodies checked
 * field by field before anything runs:
 *
 *   POST   /v1/cni/attachments {containerId, ifname, network, netns, namespace, name, labels,
 *                               hostInterfaces, ips}          ADD: adopt the veth, enforce, the endpoint
 *                               (+ standalone: true, no hostInterfaces/ips: the agent wires the container
 *                               in netns, answers the endpoint and its cniResult)
 *   GET    /v1/cni/attachments/:containerId/:ifname          CHECK: the endpoint, its host veth up
 *   DELETE /v1/cni/attachments/:containerId/:ifname          DEL: forget it (idempotent)
 *   POST   /v1/cni/gc {network, valid: [{containerID, ifname}]}   GC: forget the others of the network
 *   POST   /v1/cni/invoke {env, stdin}                     the native shim's call: the plugin run here,
 *                                                          against the routes above (cni-invoke.ts)
 */
import type { CniAttachments } from "../controllers/cni-attachments.js";
import { cniInvokeRoute, inProcessCall } from "./cni-invoke.js";
import { badField, fields, item, list, optionalBoolean, string, stringMap } from "./body.js";
import type { ApiRequest, Route } from "./router.js";

/** Attachments per GC call (a node runs far fewer containers). */
const GC_MAX = 65_536;

function strings(req: ApiRequest, b: Record<string, unknown>, field: string, max: number): string[] {
  return list(req, b, field, max).map((v, i) => {
    if (typeof v !== "string" || v.length > 64)
      throw badField(req, `${field}[${i}]`, "must be a string of at most 64 characters");
    return v;
  });
}

export function cniRoutes(cni: CniAttachments): Route[] {
  const routes = attachmentRoutes(cni);
  // STATUS asks GET /v1/status: in process, the agent answering is the answer.
  const status: Route = { method: "GET", path: "/v1/status", handler: () => ({}) };
  return [...routes, cniInvokeRoute(inProcessCall([...routes, status]))];
}

function attachmentRoutes(cni: CniAttachments): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/cni/attachments",
      status: 201,
      handler: (req) => {
        const b = fields(req, {
          containerId: "required",
          ifname: "required",
          network: "required",
          netns: "required",
          namespace: "required",
          name: "required",
          labels: "optional",
          hostInterfaces: "required",
          ips: "required",
          standalone: "optional",
        });
        const standalone = optionalBoolean(req, b, "standalone");
        return cni.add({
          containerId: string(req, b, "containerId", 255),
          ifname: string(req, b, "ifname", 15),
          network: string(req, b, "network", 255),
          netns: string(req, b, "netns", 4096),
          namespace: string(req, b, "namespace", 63),
          name: string(req, b, "name", 63),
          labels: stringMap(req, b, "labels"),
          hostInterfaces: strings(req, b, "hostInterfaces", 16),
          ips: strings(req, b, "ips", 16),
          ...(standalone !== undefined ? { standalone } : {}),
        });
      },
    },
    {
      method: "GET",
      path: "/v1/cni/attachments/:containerId/:ifname",
      handler: (req) => cni.check(req.params["containerId"] ?? "", req.params["ifname"] ?? ""),
    },
    {
      method: "DELETE",
      path: "/v1/cni/attachments/:containerId/:ifname",
      handler: (req) => cni.del(req.params["containerId"] ?? "", req.params["ifname"] ?? ""),
    },
    {
      method: "POST",
      path: "/v1/cni/gc",
      handler: (req) => {
        const b = fields(req, { network: "required", valid: "required" });
        const valid = list(req, b, "valid", GC_MAX).map((v, i) => {
          const a = item(req, `valid[${i}]`, v, { containerID: "required", ifname: "required" });
          return { containerID: string(req, a, "containerID", 255), ifname: string(req, a, "ifname", 15) };
        });
        return cni.gc(string(req, b, "network", 255), valid);
      },
    },
  ];
}
