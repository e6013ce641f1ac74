/** A `discovery.k8s.io/v1` EndpointSlice document -> LbSlice (parse.ts), every problem with its field path. */
import type { Reader } from "./reader.js";
import { DNS_LABEL } from "./reader.js";
import type { LbSlice, Protocol, SliceEndpoint } from "./types.js";

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

function readEndpoint(r: Reader, v: unknown, path: string, family: 4 | 6): SliceEndpoint | undefined {
  const o = r.map(v, path, [
    "addresses",
    "conditions",
    "hostname",
    "nodeName",
    "zone",
    "targetRef",
    "hints",
    "deprecatedTopology",
  ]);
  if (!o) return undefined;
  const raw = r.list(o["addresses"], `${path}.addresses`, 100) ?? [];
  if (raw.length === 0) r.report(`${path}.addresses`, "must hold at least one address");
  const addresses = raw.map((a, i) => r.ip(a, `${path}.addresses[${i}]`, family));
  const c =
    o["conditions"] === undefined
      ? {}
      : r.map(o["conditions"], `${path}.conditions`, ["ready", "serving", "terminating"]);
  const cond = (k: string): boolean | undefined =>
    c?.[k] === undefined || c[k] === null ? undefined : r.bool(c[k], `${path}.conditions.${k}`);
  for (const k of ["hostname", "nodeName", "zone"]) if (o[k] !== undefined) r.str(o[k], `${path}.${k}`);
  const ready = cond("ready") ?? true;
  const serving = cond("serving") ?? ready;
  const terminating = cond("terminating") ?? false;
  if (addresses.some((a) => a === undefined)) return undefined;
  return { addresses: addresses as string[], ready, serving, terminating };
}

export function readSlice(
  r: Reader,
  meta: { namespace: string; name: string; labels: Record<string, string> },
  doc: Record<string, unknown>,
): LbSlice | undefined {
  const service = meta.labels[SERVICE_NAME_LABEL];
  if (service === undefined)
    r.report(
      `metadata.labels["${SERVICE_NAME_LABEL}"]`,
      "is required: it names the service the slice belongs to",
    );
  else if (!DNS_LABEL.test(service))
    r.report(`metadata.labels["${SERVICE_NAME_LABEL}"]`, `"${service}" is not a service name`);
  r.str(doc["addressType"], "addressType", ["IPv4", "IPv6", "FQDN"]);
  if (doc["addressType"] === "FQDN")
    r.report(
      "addressType",
      "FQDN slices are not supported (kube-proxy ignores them too): give IPv4 or IPv6 addresses",
    );
  const family = doc["addressType"] === "IPv6" ? 6 : 4;
  const rawPorts =
    doc["ports"] === undefined || doc["ports"] === null ? [] : (r.list(doc["ports"], "ports", 100) ?? []);
  const ports = rawPorts.map((p, i) => {
    const path = `ports[${i}]`;
    const o = r.map(p, path, ["name", "port", "protocol", "appProtocol"]);
    if (!o) return undefined;
    const name = o["name"] === undefined ? "" : r.str(o["name"], `${path}.name`);
    if (name && !DNS_LABEL.test(name)) r.report(`${path}.name`, `"${name}" is not a DNS label`);
    const port = r.int(o["port"], `${path}.port`, 1, 65535);
    const protocol =
      o["protocol"] === undefined
        ? "TCP"
        : (r.str(o["protocol"], `${path}.protocol`, PROTOCOLS) as Protocol | undefined);
    return name === undefined || port === undefined || protocol === undefined
      ? undefined
      : { name, port, protocol };
  });
  const rawEps =
    doc["endpoints"] === undefined || doc["endpoints"] === null
      ? []
      : (r.list(doc["endpoints"], "endpoints", 1000) ?? []);
  const endpoints = rawEps.map((e, i) => readEndpoint(r, e, `endpoints[${i}]`, family));
  if (service === undefined || ports.some((p) => !p) || endpoints.some((e) => !e)) return undefined;
  return {
    namespace: meta.namespace,
    name: meta.name,
    service,
    ports: ports as LbSlice["ports"][number][],
    endpoints: endpoints as SliceEndpoint[],
  };
}
