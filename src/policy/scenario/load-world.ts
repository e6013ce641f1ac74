/**
 * Validation of a scenario's world: config, namespaces, services and
 * endpoints (the part `policy trace --endpoints` reads too).
 */
import { parseAddr } from "../../labels/cidr.js";
import { isDerivedKey } from "../../labels/k8s.js";
import { nodeLabelSet } from "../../labels/node.js";
import type { EndpointSpec, EngineConfig, NamedPort, ServiceSpec } from "../query.js";
import type { Field } from "./fields.js";

const CONFIG_FIELDS = [
  "policyEnforcementMode",
  "allowLocalhost",
  "policyCIDRMatchMode",
  "dualStack",
  "enableICMPRules",
  "meshAuth",
  "cluster",
  "fqdnMinTTL",
  "nodeLabels",
] as const;
const ENDPOINT_FIELDS = [
  "name",
  "namespace",
  "labels",
  "ip",
  "ipv6",
  "ports",
  "kind",
  "serviceAccount",
] as const;
const SERVICE_FIELDS = ["name", "namespace", "selector", "labels", "ports", "ips"] as const;
const L4_PROTOS = ["TCP", "UDP", "SCTP"] as const;
const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function readConfig(f: Field | undefined): Partial<EngineConfig> {
  if (!f) return {};
  const m = f.map(CONFIG_FIELDS);
  if (!m) return {};
  const out: { -readonly [K in keyof EngineConfig]?: EngineConfig[K] } = {};
  const mode = m.get("policyEnforcementMode")?.oneOf(["default", "always", "never"] as const);
  if (mode !== undefined) out.policyEnforcementMode = mode;
  const lh = m.get("allowLocalhost")?.oneOf(["always", "policy"] as const);
  if (lh !== undefined) out.allowLocalhost = lh;
  const cm = m.get("policyCIDRMatchMode")?.oneOf(["", "nodes"] as const);
  if (cm !== undefined) out.policyCIDRMatchMode = cm;
  for (const k of ["dualStack", "enableICMPRules", "meshAuth"] as const) {
    const b = m.get(k)?.bool();
    if (b !== undefined) out[k] = b;
  }
  const cluster = m.get("cluster")?.str({ nonEmpty: true });
  if (cluster !== undefined) out.cluster = cluster;
  const ttl = m.get("fqdnMinTTL")?.int(0, 2 ** 31 - 1);
  if (ttl !== undefined) out.fqdnMinTTL = ttl;
  const nlField = m.get("nodeLabels");
  const nodeLabels = nlField?.stringMap();
  if (nodeLabels !== undefined) {
    try {
      nodeLabelSet(nodeLabels);
      out.nodeLabels = nodeLabels;
    } catch (e) {
      nlField?.issue(e instanceof Error ? e.message : String(e));
    }
  }
  return out;
}

export function readNamespaces(f: Field | undefined): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const [name, nf] of f?.entries() ?? []) {
    if (!NAME_RE.test(name)) nf.issue(`"${name}" is not a valid namespace name`);
    const m = nf.node === null ? new Map<string, Field>() : nf.map(["labels"]);
    const labels = m?.get("labels")?.stringMap() ?? {};
    out.set(name, labels);
  }
  return out;
}

function readName(f: Field | undefined, parent: Field, what: string): string | undefined {
  if (!f) return parent.issue(`missing required field "name"`);
  const s = f.str({ nonEmpty: true });
  if (s !== undefined && !NAME_RE.test(s))
    return f.issue(`"${s}" is not a valid ${what} name (lower case, digits, - and .)`);
  return s;
}

function readIp(f: Field, family?: 4 | 6): string | undefined {
  const s = f.str();
  if (s === undefined) return undefined;
  const a = parseAddr(s);
  if (!a) return f.issue(`"${s}" is not an IP address`);
  if (family !== undefined && a.family !== family) return f.issue(`"${s}" is not an IPv${family} address`);
  return s;
}

function readWorkloadLabels(f: Field | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, vf] of f?.entries() ?? []) {
    if (k.includes(":")) vf.issue(`label key "${k}" has a source prefix; workload labels are plain keys`);
    else if (isDerivedKey(k))
      vf.issue(`label key "${k}" is derived by Membrane (io.kubernetes.*, io.cilium.*) and cannot be set`);
    const v = vf.str();
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export function readServices(f: Field | undefined): ServiceSpec[] {
  const out: ServiceSpec[] = [];
  for (const sf of f?.seq() ?? []) {
    const m = sf.map(SERVICE_FIELDS);
    if (!m) continue;
    const name = readName(m.get("name"), sf, "service");
    const namespace = m.get("namespace")?.str({ nonEmpty: true }) ?? "default";
    const selector = m.get("selector")?.stringMap();
    const labels = m.get("labels")?.stringMap();
    const portsField = m.get("ports");
    if (!portsField) sf.issue(`missing required field "ports"`);
    const ports: { port: number; protocol: "TCP" | "UDP" | "SCTP" }[] = [];
    for (const pf of portsField?.seq() ?? []) {
      const pm = pf.map(["port", "protocol", "name"]);
      if (!pm) continue;
      pm.get("name")?.str();
      const port = pm.get("port")?.int(1, 65535) ?? pf.issue(`missing required field "port"`);
      const protocol = pm.get("protocol")?.oneOf(L4_PROTOS) ?? "TCP";
      if (port !== undefined) ports.push({ port, protocol });
    }
    const ips = m
      .get("ips")
      ?.seq()
      ?.map((x) => readIp(x));
    if (name === undefined) continue;
    out.push({
      name,
      namespace,
      ports,
      ...(selector !== undefined ? { selector } : {}),
      ...(labels !== undefined ? { labels } : {}),
      ...(ips !== undefined ? { ips: ips.filter((x): x is string => x !== undefined) } : {}),
    });
  }
  return out;
}

export function readEndpoints(
  f: Field | undefined,
  dualStack: boolean,
): { endpoints: EndpointSpec[]; endpointLines: Map<string, number> } {
  const endpoints: EndpointSpec[] = [];
  const endpointLines = new Map<string, number>();
  const ipsSeen = new Map<string, string>();
  for (const ef of f?.seq() ?? []) {
    const m = ef.map(ENDPOINT_FIELDS);
    if (!m) continue;
    const name = readName(m.get("name"), ef, "endpoint");
    const namespace = m.get("namespace")?.str({ nonEmpty: true }) ?? "default";
    const labels = readWorkloadLabels(m.get("labels"));
    const ipField = m.get("ip");
    const ip = ipField ? readIp(ipField, 4) : ef.issue(`missing required field "ip"`);
    const v6Field = m.get("ipv6");
    const ipv6 = v6Field ? readIp(v6Field, 6) : undefined;
    if (ipv6 !== undefined && !dualStack) v6Field?.issue("an ipv6 address needs config.dualStack: true");
    const kind = m.get("kind")?.oneOf(["pod", "health"] as const);
    const serviceAccount = m.get("serviceAccount")?.str({ nonEmpty: true });
    const namedPorts: NamedPort[] = [];
    for (const pf of m.get("ports")?.seq() ?? []) {
      const pm = pf.map(["name", "port", "protocol"]);
      if (!pm) continue;
      const pname = pm.get("name")?.str({ nonEmpty: true }) ?? pf.issue(`missing required field "name"`);
      const port = pm.get("port")?.int(1, 65535) ?? pf.issue(`missing required field "port"`);
      const protocol = pm.get("protocol")?.oneOf(L4_PROTOS) ?? "TCP";
      if (pname !== undefined && port !== undefined)
        namedPorts.push({ name: pname.toLowerCase(), port, protocol });
    }
    if (name === undefined) continue;
    const key = `${namespace}/${name}`;
    if (endpointLines.has(key)) {
      ef.issue(`endpoint "${key}" is defined twice (first on line ${endpointLines.get(key)})`);
      continue;
    }
    endpointLines.set(key, ef.line ?? 0);
    const ips = [ip, ipv6].filter((x): x is string => x !== undefined);
    for (const a of ips) {
      const other = ipsSeen.get(a);
      if (other !== undefined) ef.issue(`address ${a} is already used by endpoint ${other}`);
      ipsSeen.set(a, key);
    }
    endpoints.push({
      name,
      namespace,
      labels,
      ips,
      ...(namedPorts.length > 0 ? { namedPorts } : {}),
      ...(kind !== undefined ? { kind } : {}),
      ...(serviceAccount !== undefined ? { serviceAccount } : {}),
    });
  }
  return { endpoints, endpointLines };
}
