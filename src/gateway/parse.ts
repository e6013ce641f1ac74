/**
 * YAML text -> GatewayClass / Gateway / HTTPRoute / GRPCRoute / ReferenceGrant / Ingress
 * values, checked whole: any problem in any document refuses the file with
 * GATEWAY_INVALID naming file, document and field path.
 *
 *   text --parseAllBounded (limits.ts)--> JS values --parseGatewayDoc--> GatewayResource[]
 */
import { MembraneError } from "../errors.js";
import { parseAllBounded } from "../policy/api/yaml-bounded.js";
import { Fields, hostnameProblem, join, type FieldProblem } from "./fields.js";
import { parseIngress } from "./ingress.js";
import { parseMeta } from "./meta.js";
import {
  GATEWAY_GROUP,
  type FromNamespaces,
  type Gateway,
  type GatewayClass,
  type GatewayResource,
  type Listener,
  type Meta,
  type ReferenceGrant,
} from "./model.js";
import { parseGrpcRoute } from "./parse-grpc-route.js";
import { parseHttpRoute } from "./parse-route.js";

const GW_VERSIONS = [`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1beta1`];

export function isGatewayKind(kind: string): boolean {
  return ["GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant", "Ingress"].includes(kind);
}

/** Every document of `text`; throws GATEWAY_INVALID listing the problems (file, document, path). */
export function parseGatewayResources(text: string, file: string): GatewayResource[] {
  const { docs, errors } = parseAllBounded(text, file);
  if (errors.length > 0)
    throw new MembraneError(
      "GATEWAY_INVALID",
      `Cannot read ${file}: YAML syntax: ${errors[0]?.message ?? ""}`,
      {
        location: { file },
      },
    );
  const out: GatewayResource[] = [];
  const problems: string[] = [];
  docs.forEach((d, i) => {
    const v = d.toJS({ maxAliasCount: 10_000 }) as unknown;
    if (v === null || v === undefined) return;
    const f = new Fields();
    const r = parseGatewayDoc(v, f);
    for (const p of f.problems) problems.push(`${file} document ${i + 1}: ${p.path}: ${p.message}`);
    if (r && f.problems.length === 0) out.push(r);
  });
  if (problems.length > 0) {
    const shown = problems.slice(0, 20).join("\n  ");
    const more = problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : "";
    throw new MembraneError(
      "GATEWAY_INVALID",
      `Cannot apply ${file}: ${problems.length} problems:\n  ${shown}${more}`,
      {
        location: { file },
        hint: "fix the fields named above; nothing was applied",
      },
    );
  }
  return out;
}

/** One document (a JS value) -> a resource; problems go to `f`. */
export function parseGatewayDoc(v: unknown, f: Fields): GatewayResource | undefined {
  const o = f.obj(v, "");
  if (!o) return f.fail("", "a document must be a mapping");
  const kind = f.str(o["kind"], "kind", true);
  const apiVersion = f.str(o["apiVersion"], "apiVersion", true);
  if (kind === undefined || apiVersion === undefined) return undefined;
  if (kind === "Ingress") {
    if (apiVersion !== "networking.k8s.io/v1")
      return f.fail("apiVersion", `must be networking.k8s.io/v1 for Ingress, not ${apiVersion}`);
    return parseIngress(o, f);
  }
  if (
    !GW_VERSIONS.includes(apiVersion) &&
    !(kind === "ReferenceGrant" && apiVersion === `${GATEWAY_GROUP}/v1beta1`)
  )
    return f.fail("apiVersion", `must be ${GATEWAY_GROUP}/v1, not ${apiVersion}`);
  f.known(o, "", ["apiVersion", "kind", "metadata", "spec", "status"]);
  const meta = parseMeta(o["metadata"], f, kind !== "GatewayClass");
  const spec = f.obj(o["spec"], "spec") ?? (f.fail("spec", "is required") as undefined);
  if (!meta || !spec) return undefined;
  switch (kind) {
    case "GatewayClass":
      return parseGatewayClass(meta, spec, f);
    case "Gateway":
      return parseGateway(meta, spec, f);
    case "HTTPRoute":
      return parseHttpRoute(meta, spec, f);
    case "GRPCRoute":
      return parseGrpcRoute(meta, spec, f);
    case "ReferenceGrant":
      return parseReferenceGrant(meta, spec, f);
    default:
      return f.fail(
        "kind",
        `${kind} is not a kind Membrane's gateway takes (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant, Ingress)`,
      );
  }
}

function parseGatewayClass(meta: Meta, spec: Record<string, unknown>, f: Fields): GatewayClass | undefined {
  f.known(spec, "spec", ["controllerName", "description", "parametersRef"]);
  const controllerName = f.str(spec["controllerName"], "spec.controllerName", true);
  return controllerName === undefined ? undefined : { kind: "GatewayClass", meta, controllerName };
}

function parseGateway(meta: Meta, spec: Record<string, unknown>, f: Fields): Gateway | undefined {
  f.known(spec, "spec", ["gatewayClassName", "listeners", "addresses", "infrastructure"]);
  const gatewayClassName = f.str(spec["gatewayClassName"], "spec.gatewayClassName", true);
  const listeners = f
    .arr(spec["listeners"], "spec.listeners")
    .map((l, i) => parseListener(l, `spec.listeners[${i}]`, f));
  if (listeners.length === 0) f.fail("spec.listeners", "needs at least one listener");
  const names = new Set<string>();
  listeners.forEach((l, i) => {
    if (l && names.has(l.name)) f.fail(`spec.listeners[${i}].name`, `${l.name} is used by another listener`);
    if (l) names.add(l.name);
  });
  const addresses = f.arr(spec["addresses"], "spec.addresses").map((a, i) => {
    const p = `spec.addresses[${i}]`;
    const o = f.obj(a, p);
    f.known(o, p, ["type", "value"]);
    return {
      type: f.str(o?.["type"], join(p, "type")) ?? "IPAddress",
      value: f.str(o?.["value"], join(p, "value"), true) ?? "",
    };
  });
  if (gatewayClassName === undefined) return undefined;
  return {
    kind: "Gateway",
    meta,
    gatewayClassName,
    listeners: listeners.filter((l): l is Listener => !!l),
    addresses,
  };
}

function parseListener(v: unknown, path: string, f: Fields): Listener | undefined {
  const o = f.obj(v, path);
  if (!o) return f.fail(path, "must be a mapping");
  f.known(o, path, ["name", "hostname", "port", "protocol", "tls", "allowedRoutes"]);
  const name = f.str(o["name"], join(path, "name"), true);
  const hostname = f.str(o["hostname"], join(path, "hostname"));
  if (hostname !== undefined) {
    const why = hostnameProblem(hostname);
    if (why) f.fail(join(path, "hostname"), why);
  }
  const port = f.int(o["port"], join(path, "port"), 1, 65535, true);
  const protocol = f.str(o["protocol"], join(path, "protocol"), true);
  const tls = f.obj(o["tls"], join(path, "tls"));
  f.known(tls, join(path, "tls"), ["mode", "certificateRefs", "options", "frontendValidation"]);
  // Passthrough is valid on a TLS listener (which Membrane does not serve: UnsupportedProtocol in its
  // status), not on HTTPS, as the API's validation says.
  const mode = f.oneOf(
    tls?.["mode"],
    join(path, "tls.mode"),
    ["Terminate", "Passthrough"] as const,
    "Terminate",
  );
  if (mode === "Passthrough" && protocol === "HTTPS")
    f.fail(join(path, "tls.mode"), "must be Terminate on an HTTPS listener");
  const certificateRefs = f.arr(tls?.["certificateRefs"], join(path, "tls.certificateRefs")).map((c, i) => {
    const p = join(path, `tls.certificateRefs[${i}]`);
    const r = f.obj(c, p);
    f.known(r, p, ["group", "kind", "name", "namespace"]);
    const namespace = f.str(r?.["namespace"], join(p, "namespace"));
    return {
      group: f.str(r?.["group"], join(p, "group")) ?? "",
      kind: f.str(r?.["kind"], join(p, "kind")) ?? "Secret",
      name: f.str(r?.["name"], join(p, "name"), true) ?? "",
      ...(namespace !== undefined ? { namespace } : {}),
    };
  });
  const ar = f.obj(o["allowedRoutes"], join(path, "allowedRoutes"));
  f.known(ar, join(path, "allowedRoutes"), ["namespaces", "kinds"]);
  const ns = f.obj(ar?.["namespaces"], join(path, "allowedRoutes.namespaces"));
  f.known(ns, join(path, "allowedRoutes.namespaces"), ["from", "selector"]);
  const from = f.oneOf(
    ns?.["from"],
    join(path, "allowedRoutes.namespaces.from"),
    ["Same", "All", "Selector"],
    "Same",
  );
  let namespaces: FromNamespaces = { from: from === "All" ? "All" : "Same" };
  if (from === "Selector") {
    const sel = f.obj(ns?.["selector"], join(path, "allowedRoutes.namespaces.selector"));
    if (!sel) f.fail(join(path, "allowedRoutes.namespaces.selector"), "is required with from: Selector");
    f.known(sel, join(path, "allowedRoutes.namespaces.selector"), ["matchLabels"]);
    namespaces = {
      from: "Selector",
      matchLabels: f.labels(
        sel?.["matchLabels"],
        join(path, "allowedRoutes.namespaces.selector.matchLabels"),
      ),
    };
  }
  const kinds = f.arr(ar?.["kinds"], join(path, "allowedRoutes.kinds")).map((k, i) => {
    const p = join(path, `allowedRoutes.kinds[${i}]`);
    const r = f.obj(k, p);
    return {
      group: f.str(r?.["group"], join(p, "group")) ?? GATEWAY_GROUP,
      kind: f.str(r?.["kind"], join(p, "kind"), true) ?? "",
    };
  });
  if (name === undefined || port === undefined || protocol === undefined) return undefined;
  return {
    name,
    ...(hostname !== undefined ? { hostname } : {}),
    port,
    protocol,
    certificateRefs,
    namespaces,
    kinds,
  };
}

function parseReferenceGrant(meta: Meta, spec: Record<string, unknown>, f: Fields): ReferenceGrant {
  f.known(spec, "spec", ["from", "to"]);
  const from = f.arr(spec["from"], "spec.from").map((v, i) => {
    const p = `spec.from[${i}]`;
    const o = f.obj(v, p);
    f.known(o, p, ["group", "kind", "namespace"]);
    return {
      group: f.str(o?.["group"], join(p, "group")) ?? "",
      kind: f.str(o?.["kind"], join(p, "kind"), true) ?? "",
      namespace: f.str(o?.["namespace"], join(p, "namespace"), true) ?? "",
    };
  });
  const to = f.arr(spec["to"], "spec.to").map((v, i) => {
    const p = `spec.to[${i}]`;
    const o = f.obj(v, p);
    f.known(o, p, ["group", "kind", "name"]);
    const name = f.str(o?.["name"], join(p, "name"));
    return {
      group: f.str(o?.["group"], join(p, "group")) ?? "",
      kind: f.str(o?.["kind"], join(p, "kind"), true) ?? "",
      ...(name !== undefined ? { name } : {}),
    };
  });
  if (from.length === 0) f.fail("spec.from", "needs at least one entry");
  if (to.length === 0) f.fail("spec.to", "needs at least one entry");
  return { kind: "ReferenceGrant", meta, from, to };
}

export type { FieldProblem };
