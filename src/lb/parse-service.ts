/** A `v1` Service document -> LbService (parse.ts), every problem with its field path. */
import type { Reader } from "./reader.js";
import { DNS_LABEL } from "./reader.js";
import type { IpFamily, LbService, Protocol, ServicePortSpec } from "./types.js";

export const ALGORITHM_ANNOTATION = "membrane.io/lb-algorithm";
/** Cilium's annotation: the service's HTTP/2 and gRPC requests are balanced per request by the L7 proxy. */
export const LB_L7_ANNOTATION = "service.cilium.io/lb-l7";
/** appProtocol: an IANA service name or a prefixed name (`kubernetes.io/h2c`), as Kubernetes validates it. */
const APP_PROTOCOL = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const SPEC_FIELDS = [
  "type",
  "selector",
  "clusterIP",
  "clusterIPs",
  "ports",
  "sessionAffinity",
  "sessionAffinityConfig",
  "ipFamilies",
  "ipFamilyPolicy",
  "externalTrafficPolicy",
  "internalTrafficPolicy",
  "loadBalancerClass",
  "allocateLoadBalancerNodePorts",
  "publishNotReadyAddresses",
  "healthCheckNodePort",
];
const PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

function readPort(r: Reader, v: unknown, path: string, type: LbService["type"]): ServicePortSpec | undefined {
  const o = r.map(v, path, ["name", "protocol", "port", "targetPort", "nodePort", "appProtocol"]);
  if (!o) return undefined;
  const name = o["name"] === undefined ? undefined : r.str(o["name"], `${path}.name`);
  if (name !== undefined && !DNS_LABEL.test(name))
    r.report(`${path}.name`, `"${name}" is not a DNS label (a-z, 0-9, -)`);
  const protocol =
    o["protocol"] === undefined
      ? "TCP"
      : (r.str(o["protocol"], `${path}.protocol`, PROTOCOLS) as Protocol | undefined);
  const port = r.int(o["port"], `${path}.port`, 1, 65535);
  let targetPort: number | string | undefined = port;
  const tp = o["targetPort"];
  if (typeof tp === "string") {
    if (/^[0-9]+$/.test(tp)) targetPort = r.int(Number(tp), `${path}.targetPort`, 1, 65535);
    else if (!/^[a-z0-9]([-a-z0-9]{0,13})$/.test(tp) || !/[a-z]/.test(tp))
      targetPort = r.report(
        `${path}.targetPort`,
        `"${tp}" is neither a port number nor a port name (IANA_SVC_NAME, up to 15 chars)`,
      );
    else targetPort = tp;
  } else if (tp !== undefined) targetPort = r.int(tp, `${path}.targetPort`, 1, 65535);
  let appProtocol: string | undefined;
  if (o["appProtocol"] !== undefined) {
    appProtocol = r.str(o["appProtocol"], `${path}.appProtocol`);
    if (appProtocol !== undefined && !APP_PROTOCOL.test(appProtocol))
      appProtocol = r.report(
        `${path}.appProtocol`,
        `"${appProtocol}" is not a protocol name (e.g. kubernetes.io/h2c, grpc)`,
      );
  }
  let nodePort: number | undefined;
  if (o["nodePort"] !== undefined) {
    if (type === "ClusterIP")
      r.report(`${path}.nodePort`, "may only be set on NodePort and LoadBalancer services");
    else nodePort = r.int(o["nodePort"], `${path}.nodePort`, 1, 65535);
  }
  if (protocol === undefined || port === undefined || targetPort === undefined) return undefined;
  return {
    ...(name !== undefined ? { name } : {}),
    protocol,
    port,
    targetPort,
    ...(nodePort !== undefined ? { nodePort } : {}),
    ...(appProtocol !== undefined ? { appProtocol } : {}),
  };
}

/**
 * spec.clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy, checked against one another as the
 * apiserver does; which families the service gets is decided at allocation (allocate.ts), where the
 * node's service CIDRs are known.
 */
function readAddresses(
  r: Reader,
  spec: Record<string, unknown>,
  type: string | undefined,
): Pick<LbService, "clusterIP" | "clusterIPs" | "ipFamilies" | "ipFamilyPolicy"> {
  const policy =
    spec["ipFamilyPolicy"] === undefined
      ? "SingleStack"
      : r.str(spec["ipFamilyPolicy"], "spec.ipFamilyPolicy", [
          "SingleStack",
          "PreferDualStack",
          "RequireDualStack",
        ]);
  const families: IpFamily[] = [];
  (spec["ipFamilies"] === undefined ? [] : (r.list(spec["ipFamilies"], "spec.ipFamilies", 2) ?? [])).forEach(
    (f, i) => {
      const v = r.str(f, `spec.ipFamilies[${i}]`, ["IPv4", "IPv6"]) as IpFamily | undefined;
      if (v !== undefined && families.includes(v)) r.report(`spec.ipFamilies[${i}]`, `repeats ${v}`);
      else if (v !== undefined) families.push(v);
    },
  );
  const ip = (v: unknown, path: string): string | undefined => (v === "None" ? "None" : r.ip(v, path));
  const one = spec["clusterIP"] === undefined || spec["clusterIP"] === "" ? undefined : ip(spec["clusterIP"], "spec.clusterIP"); // prettier-ignore
  const ips: string[] = [];
  if (spec["clusterIPs"] !== undefined)
    (r.list(spec["clusterIPs"], "spec.clusterIPs", 2) ?? []).forEach((v, i) => {
      const a = ip(v, `spec.clusterIPs[${i}]`);
      if (a !== undefined) ips.push(a);
    });
  if (one !== undefined && ips[0] !== undefined && ips[0] !== one)
    r.report("spec.clusterIPs[0]", `must equal spec.clusterIP (${one})`);
  const given = ips.length > 0 ? ips : one !== undefined ? [one] : [];
  if (given.includes("None")) {
    if (type !== "ClusterIP")
      r.report(
        "spec.clusterIP",
        `"None" (headless) is only for ClusterIP services, not ${type ?? "this type"}`,
      );
    if (given.length > 1) r.report("spec.clusterIPs", `"None" must be the only address`);
  }
  const fam = (a: string): IpFamily => (a.includes(":") ? "IPv6" : "IPv4");
  if (
    given.length === 2 &&
    given[0] !== "None" &&
    given[1] !== "None" &&
    fam(given[0] as string) === fam(given[1] as string)
  )
    r.report("spec.clusterIPs", "must hold one address of each family (dual-stack)");
  if (policy === "SingleStack" && (given.length > 1 || families.length > 1))
    r.report("spec.ipFamilyPolicy", "must be PreferDualStack or RequireDualStack when two families or addresses are given"); // prettier-ignore
  given.forEach((a, i) => {
    const f = families[i];
    if (a !== "None" && f !== undefined && fam(a) !== f)
      r.report(`spec.ipFamilies[${i}]`, `is ${f} but spec.clusterIPs[${i}] (${a}) is ${fam(a)}`);
  });
  return {
    ...(given[0] !== undefined ? { clusterIP: given[0] } : {}),
    ...(given.length === 2 ? { clusterIPs: given } : {}),
    ...(families.length > 0 ? { ipFamilies: families } : {}),
    ...(policy === "PreferDualStack" || policy === "RequireDualStack" ? { ipFamilyPolicy: policy } : {}),
  };
}

/** The spec of a Service named `ns/name` (metadata read by parse.ts). */
export function readService(
  r: Reader,
  meta: {
    namespace: string;
    name: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  },
  specRaw: unknown,
): LbService | undefined {
  const spec = r.map(specRaw, "spec", SPEC_FIELDS);
  if (!spec) return undefined;
  const type = (
    spec["type"] === undefined
      ? "ClusterIP"
      : r.str(spec["type"], "spec.type", ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"])
  ) as LbService["type"] | "ExternalName" | undefined;
  if (type === "ExternalName")
    r.report("spec.type", "ExternalName is not supported (it is DNS only, nothing is balanced)");
  const selector = spec["selector"] === undefined ? undefined : r.strMap(spec["selector"], "spec.selector");
  const addresses = readAddresses(r, spec, type);
  const clusterIP = addresses.clusterIP;
  const local: Record<string, boolean> = {};
  for (const f of ["externalTrafficPolicy", "internalTrafficPolicy"])
    if (spec[f] !== undefined) local[f] = r.str(spec[f], `spec.${f}`, ["Cluster", "Local"]) === "Local";
  // As the apiserver: only a service reachable from outside has an external traffic policy (Cluster,
  // the default, is let through: it changes nothing).
  if (local["externalTrafficPolicy"] === true && type !== "NodePort" && type !== "LoadBalancer")
    r.report("spec.externalTrafficPolicy", `may only be set on NodePort and LoadBalancer services, not ${type ?? "this type"}`); // prettier-ignore
  let healthCheckNodePort: number | undefined;
  if (spec["healthCheckNodePort"] !== undefined) {
    if (type !== "LoadBalancer" || local["externalTrafficPolicy"] !== true)
      r.report("spec.healthCheckNodePort", "may only be set when spec.type is LoadBalancer and spec.externalTrafficPolicy is Local"); // prettier-ignore
    else healthCheckNodePort = r.int(spec["healthCheckNodePort"], "spec.healthCheckNodePort", 1, 65535);
  }
  if (spec["publishNotReadyAddresses"] !== undefined)
    r.bool(spec["publishNotReadyAddresses"], "spec.publishNotReadyAddresses");
  if (spec["allocateLoadBalancerNodePorts"] !== undefined)
    r.bool(spec["allocateLoadBalancerNodePorts"], "spec.allocateLoadBalancerNodePorts");
  if (spec["loadBalancerClass"] !== undefined) r.str(spec["loadBalancerClass"], "spec.loadBalancerClass");
  const rawPorts = r.list(spec["ports"] ?? [], "spec.ports", 1024) ?? [];
  if (rawPorts.length === 0 && clusterIP !== "None") r.report("spec.ports", "must name at least one port");
  const ports = rawPorts.map((p, i) =>
    readPort(r, p, `spec.ports[${i}]`, type === "ExternalName" || type === undefined ? "ClusterIP" : type),
  );
  const seen = new Map<string, number>();
  ports.forEach((p, i) => {
    if (!p) return;
    if (rawPorts.length > 1 && p.name === undefined)
      r.report(`spec.ports[${i}].name`, "is required when a service has more than one port");
    for (const key of [
      `name ${p.name ?? ""}`,
      `${p.protocol}/${p.port}`,
      ...(p.nodePort ? [`node ${p.protocol}/${p.nodePort}`] : []),
    ]) {
      const j = seen.get(key);
      if (j !== undefined) r.report(`spec.ports[${i}]`, `repeats spec.ports[${j}] (${key})`);
      seen.set(key, i);
    }
  });
  const aff =
    spec["sessionAffinity"] === undefined
      ? "None"
      : r.str(spec["sessionAffinity"], "spec.sessionAffinity", ["None", "ClientIP"]);
  let affinitySeconds: number | undefined;
  if (spec["sessionAffinityConfig"] !== undefined) {
    const c = r.map(spec["sessionAffinityConfig"], "spec.sessionAffinityConfig", ["clientIP"]);
    const ip =
      c?.["clientIP"] === undefined
        ? undefined
        : r.map(c["clientIP"], "spec.sessionAffinityConfig.clientIP", ["timeoutSeconds"]);
    if (ip?.["timeoutSeconds"] !== undefined)
      affinitySeconds = r.int(
        ip["timeoutSeconds"],
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        1,
        86400,
      );
    if (aff !== "ClientIP")
      r.report("spec.sessionAffinityConfig", "is only allowed with sessionAffinity: ClientIP");
  }
  const algorithm = meta.annotations[ALGORITHM_ANNOTATION] ?? "random";
  if (algorithm !== "random" && algorithm !== "maglev")
    r.report(
      `metadata.annotations["${ALGORITHM_ANNOTATION}"]`,
      `must be random or maglev, not "${algorithm}"`,
    );
  const l7 = meta.annotations[LB_L7_ANNOTATION];
  if (l7 !== undefined && l7 !== "enabled" && l7 !== "disabled")
    r.report(`metadata.annotations["${LB_L7_ANNOTATION}"]`, `must be enabled or disabled, not "${l7}"`);
  if (type === undefined || type === "ExternalName" || ports.some((p) => p === undefined)) return undefined;
  return {
    namespace: meta.namespace,
    name: meta.name,
    labels: meta.labels,
    type,
    ...(selector !== undefined ? { selector } : {}),
    ...(clusterIP !== undefined ? { clusterIP } : {}),
    ...(addresses.clusterIPs ? { clusterIPs: addresses.clusterIPs } : {}),
    ...(addresses.ipFamilies ? { ipFamilies: addresses.ipFamilies } : {}),
    ...(addresses.ipFamilyPolicy ? { ipFamilyPolicy: addresses.ipFamilyPolicy } : {}),
    ports: ports as ServicePortSpec[],
    ...(aff === "ClientIP" ? { affinitySeconds: affinitySeconds ?? 10800 } : {}),
    algorithm: algorithm === "maglev" ? "maglev" : "random",
    ...(l7 === "enabled" ? { lbL7: true } : {}),
    ...(local["externalTrafficPolicy"] === true ? { externalLocal: true } : {}),
    ...(local["internalTrafficPolicy"] === true ? { internalLocal: true } : {}),
    ...(healthCheckNodePort !== undefined ? { healthCheckNodePort } : {}),
  };
}
