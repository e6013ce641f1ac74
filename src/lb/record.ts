/**
 * A stored Service or EndpointSlice record (JSON under `lb/services/` or `lb/slices/`), read
 * back: at start from the node's store, and in cluster mode from etcd, where another node wrote
 * it. Checked field by field before it reaches the model or the kernel: a record that does not
 * decode is refused with the field that is wrong (the caller logs it and skips it). Pure.
 */
import { isIpv4, isIpv6 } from "../datapath/lb-compile.js";
import type { LbService, LbSlice } from "./types.js";

type Obj = Record<string, unknown>;

function fail(path: string, why: string): never {
  throw new Error(`${path} ${why}`);
}

function obj(v: unknown, path: string): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(path, "is not an object");
  return v as Obj;
}

function str(o: Obj, k: string, path: string): string {
  if (typeof o[k] !== "string") fail(`${path}.${k}`, "is not a string");
  return o[k] as string;
}

function port(v: unknown, path: string): void {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) fail(path, "is not a port");
}

function strings(v: unknown, path: string): void {
  const o = obj(v, path);
  for (const [k, x] of Object.entries(o)) if (typeof x !== "string") fail(`${path}.${k}`, "is not a string");
}

const PROTOCOLS = ["TCP", "UDP", "SCTP"];
/** An address as lb/ writes it (IPv6 in its canonical text, which the datapath requires). */
const addr = (s: string): boolean => isIpv4(s) || isIpv6(s);

/** The record under `lb/services/<key>` (key "namespace/name"); throws naming the bad field. */
export function readServiceRecord(value: string, key: string): LbService {
  const s = obj(JSON.parse(value) as unknown, "service");
  if (`${str(s, "namespace", "service")}/${str(s, "name", "service")}` !== key)
    fail("service.metadata", `names another service than ${key}`);
  if (!["ClusterIP", "NodePort", "LoadBalancer"].includes(str(s, "type", "service"))) fail("service.type", "is unknown"); // prettier-ignore
  if (!["random", "maglev"].includes(str(s, "algorithm", "service"))) fail("service.algorithm", "is unknown");
  strings(s["labels"], "service.labels");
  if (s["selector"] !== undefined) strings(s["selector"], "service.selector");
  for (const f of ["clusterIP", "loadBalancerIP"]) {
    const ip = s[f];
    if (ip !== undefined && !(typeof ip === "string" && (addr(ip) || (f === "clusterIP" && ip === "None"))))
      fail(`service.${f}`, "is not an IP address");
  }
  if (s["clusterIPs"] !== undefined) {
    const ips = s["clusterIPs"];
    if (
      !Array.isArray(ips) ||
      ips.length !== 2 ||
      ips.some((a) => typeof a !== "string" || !addr(a)) ||
      ips[0] !== s["clusterIP"]
    )
      // prettier-ignore
      fail("service.clusterIPs", "is not the clusterIP and an address of the other family");
  }
  if (s["loadBalancerIPs"] !== undefined) {
    const ips = s["loadBalancerIPs"];
    if (
      !Array.isArray(ips) ||
      ips.length !== 2 ||
      ips.some((a) => typeof a !== "string" || !addr(a)) ||
      ips[0] !== s["loadBalancerIP"] ||
      String(ips[0]).includes(":") === String(ips[1]).includes(":")
    )
      // prettier-ignore
      fail("service.loadBalancerIPs", "is not the loadBalancerIP and an address of the other family");
  }
  if (s["healthCheckNodePort"] !== undefined) port(s["healthCheckNodePort"], "service.healthCheckNodePort");
  if (s["ipFamilies"] !== undefined) {
    const f = s["ipFamilies"];
    if (!Array.isArray(f) || f.length < 1 || f.length > 2 || f.some((x) => x !== "IPv4" && x !== "IPv6"))
      fail("service.ipFamilies", "is not a list of IPv4 and IPv6");
  }
  if (
    s["ipFamilyPolicy"] !== undefined &&
    !["PreferDualStack", "RequireDualStack"].includes(s["ipFamilyPolicy"] as string)
  )
    // prettier-ignore
    fail("service.ipFamilyPolicy", "is unknown");
  for (const f of ["lbL7", "externalLocal", "internalLocal"])
    if (s[f] !== undefined && s[f] !== true) fail(`service.${f}`, "is not true");
  const aff = s["affinitySeconds"];
  if (aff !== undefined && !(Number.isInteger(aff) && (aff as number) > 0)) fail("service.affinitySeconds", "is not a whole number above 0"); // prettier-ignore
  if (!Array.isArray(s["ports"])) fail("service.ports", "is not a list");
  (s["ports"] as unknown[]).forEach((p, i) => {
    const q = obj(p, `service.ports[${i}]`);
    if (!PROTOCOLS.includes(str(q, "protocol", `service.ports[${i}]`))) fail(`service.ports[${i}].protocol`, "is unknown"); // prettier-ignore
    port(q["port"], `service.ports[${i}].port`);
    if (q["nodePort"] !== undefined) port(q["nodePort"], `service.ports[${i}].nodePort`);
    if (typeof q["targetPort"] !== "string") port(q["targetPort"], `service.ports[${i}].targetPort`);
  });
  return s as unknown as LbService;
}

/** The record under `lb/slices/<key>` (key "namespace/name"); throws naming the bad field. */
export function readSliceRecord(value: string, key: string): LbSlice {
  const s = obj(JSON.parse(value) as unknown, "slice");
  if (`${str(s, "namespace", "slice")}/${str(s, "name", "slice")}` !== key)
    fail("slice.metadata", `names another slice than ${key}`);
  str(s, "service", "slice");
  if (!Array.isArray(s["ports"])) fail("slice.ports", "is not a list");
  (s["ports"] as unknown[]).forEach((p, i) => {
    const q = obj(p, `slice.ports[${i}]`);
    str(q, "name", `slice.ports[${i}]`);
    if (!PROTOCOLS.includes(str(q, "protocol", `slice.ports[${i}]`))) fail(`slice.ports[${i}].protocol`, "is unknown"); // prettier-ignore
    port(q["port"], `slice.ports[${i}].port`);
  });
  if (!Array.isArray(s["endpoints"])) fail("slice.endpoints", "is not a list");
  (s["endpoints"] as unknown[]).forEach((e, i) => {
    const q = obj(e, `slice.endpoints[${i}]`);
    for (const b of ["ready", "serving", "terminating"])
      if (typeof q[b] !== "boolean") fail(`slice.endpoints[${i}].${b}`, "is not true or false");
    const a = q["addresses"];
    if (!Array.isArray(a) || a.some((x) => typeof x !== "string" || !addr(x)))
      fail(`slice.endpoints[${i}].addresses`, "is not a list of IP addresses");
  });
  return s as unknown as LbSlice;
}
