/**
 * `networking.k8s.io/v1` Ingress (class `membrane`) -> the same route model
 * as HTTPRoute. Shared mode, as Cilium's default: every Ingress of the class
 * is served by one internal Gateway (INGRESS_GATEWAY) on the gateway
 * address, port 80, and port 443 for the hosts of `spec.tls`.
 *
 *   rule {host, paths[]} --> HTTPRoute {hostnames: [host], rules: one per path}
 *   pathType Exact -> Exact; Prefix and ImplementationSpecific -> PathPrefix
 *   defaultBackend   --> a PathPrefix `/` rule in every host's route, and a
 *                        route without hostnames (requests no rule's host takes)
 */
import { Fields, hostnameProblem, join } from "./fields.js";
import type { HTTPRoute, Ingress, IngressBackend, Meta, RouteRule } from "./model.js";
import { parseMeta } from "./meta.js";

/** The internal Gateway every Ingress attaches to (namespace/name never valid for users: leading `_`). */
export const INGRESS_GATEWAY = { namespace: "_ingress", name: "membrane-ingress" } as const;

export function parseIngress(o: Record<string, unknown>, f: Fields): Ingress | undefined {
  f.known(o, "", ["apiVersion", "kind", "metadata", "spec", "status"]);
  const meta = parseMeta(o["metadata"], f, true);
  const spec = f.obj(o["spec"], "spec") ?? {};
  f.known(spec, "spec", ["ingressClassName", "defaultBackend", "rules", "tls"]);
  const ingressClassName = f.str(spec["ingressClassName"], "spec.ingressClassName", true);
  const defaultBackend =
    spec["defaultBackend"] === undefined
      ? undefined
      : backend(spec["defaultBackend"], "spec.defaultBackend", f);
  const rules = f.arr(spec["rules"], "spec.rules").map((r, i) => {
    const p = `spec.rules[${i}]`;
    const ro = f.obj(r, p) ?? {};
    f.known(ro, p, ["host", "http"]);
    const host = f.str(ro["host"], join(p, "host"));
    if (host !== undefined && hostnameProblem(host)) f.fail(join(p, "host"), hostnameProblem(host) ?? "");
    const http = f.obj(ro["http"], join(p, "http")) ?? {};
    f.known(http, join(p, "http"), ["paths"]);
    const paths = f.arr(http["paths"], join(p, "http.paths")).map((x, j) => {
      const q = `${p}.http.paths[${j}]`;
      const po = f.obj(x, q) ?? {};
      f.known(po, q, ["path", "pathType", "backend"]);
      const pathType =
        f.oneOf(po["pathType"], join(q, "pathType"), [
          "Exact",
          "Prefix",
          "ImplementationSpecific",
        ] as const) ?? "Prefix";
      const path = f.str(po["path"], join(q, "path")) ?? "/";
      if (!path.startsWith("/")) f.fail(join(q, "path"), "must start with /");
      return {
        path,
        pathType,
        backend: backend(po["backend"], join(q, "backend"), f) ?? { service: "", port: 0 },
      };
    });
    return { ...(host !== undefined ? { host } : {}), paths };
  });
  if (!defaultBackend && rules.length === 0) f.fail("spec", "needs rules or a defaultBackend");
  const tls = f.arr(spec["tls"], "spec.tls").map((t, i) => {
    const p = `spec.tls[${i}]`;
    const to = f.obj(t, p) ?? {};
    f.known(to, p, ["hosts", "secretName"]);
    return {
      hosts: f.arr(to["hosts"], join(p, "hosts")).map((h, j) => f.str(h, `${p}.hosts[${j}]`, true) ?? ""),
      secretName: f.str(to["secretName"], join(p, "secretName"), true) ?? "",
    };
  });
  if (!meta || ingressClassName === undefined) return undefined;
  return {
    kind: "Ingress",
    meta,
    ingressClassName,
    ...(defaultBackend ? { defaultBackend } : {}),
    rules,
    tls,
  };
}

function backend(v: unknown, p: string, f: Fields): IngressBackend | undefined {
  const o = f.obj(v, p);
  if (!o) return f.fail(p, "is required");
  f.known(o, p, ["service", "resource"]);
  if (o["resource"] !== undefined)
    return f.fail(join(p, "resource"), "resource backends are not supported: use service");
  const s = f.obj(o["service"], join(p, "service")) ?? {};
  f.known(s, join(p, "service"), ["name", "port"]);
  const port = f.obj(s["port"], join(p, "service.port")) ?? {};
  f.known(port, join(p, "service.port"), ["number", "name"]);
  if (port["name"] !== undefined)
    return f.fail(join(p, "service.port.name"), "named service ports are not supported: use port.number");
  const number = f.int(port["number"], join(p, "service.port.number"), 1, 65535, true);
  const service = f.str(s["name"], join(p, "service.name"), true);
  return service === undefined || number === undefined ? undefined : { service, port: number };
}

/** The routes an Ingress stands for, attached to INGRESS_GATEWAY (sections `http` and `https`). */
export function ingressRoutes(ing: Ingress): HTTPRoute[] {
  const parentRefs = ["http", "https"].map((sectionName) => ({
    group: "gateway.networking.k8s.io",
    kind: "Gateway",
    ...INGRESS_GATEWAY,
    sectionName,
  }));
  const toRule = (b: IngressBackend, type: "Exact" | "PathPrefix", value: string): RouteRule => ({
    matches: [{ path: { type, value }, headers: [], queryParams: [] }],
    filters: [],
    backendRefs: [
      { group: "", kind: "Service", name: b.service, namespace: ing.meta.namespace, port: b.port, weight: 1 },
    ],
  });
  const dflt = ing.defaultBackend ? [toRule(ing.defaultBackend, "PathPrefix", "/")] : [];
  const byHost = new Map<string, RouteRule[]>();
  for (const r of ing.rules) {
    const key = r.host ?? "";
    const rules = byHost.get(key) ?? [];
    for (const p of r.paths)
      rules.push(toRule(p.backend, p.pathType === "Exact" ? "Exact" : "PathPrefix", p.path));
    byHost.set(key, rules);
  }
  if (!byHost.has("") && dflt.length > 0) byHost.set("", []);
  const meta = (suffix: string): Meta => ({ ...ing.meta, name: `${ing.meta.name}${suffix}` });
  return [...byHost].map(([host, rules], i) => ({
    kind: "HTTPRoute",
    meta: meta(i === 0 ? "" : `#${i}`),
    parentRefs,
    hostnames: host === "" ? [] : [host],
    rules: [...rules, ...dflt],
  }));
}
