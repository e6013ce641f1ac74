/**
 * Validation of `queries`: each entry becomes a ScenarioQuery; peers are
 * checked against the scenario's endpoints, and `fqdn:` peers against the
 * DNS answers seen so far: a query's `dns` is the complete set of answers the
 * node has seen before it (`[]`: none); a query without `dns` keeps the set
 * of the query before it.
 */
import { parseAddr } from "../../labels/cidr.js";
import type { EndpointSpec, HttpRequest, KafkaRequest } from "../query.js";
import type { Field } from "./fields.js";
import { isExtendedProtocol } from "../types.js";
import { dnsKey, findEndpoint, parsePeer } from "./peer.js";
import { DENY_HOWS, type DnsObservation, QUERY_PROTOS, type ScenarioQuery } from "./types.js";

const QUERY_FIELDS = [
  "from",
  "to",
  "proto",
  "port",
  "icmpType",
  "http",
  "kafka",
  "tls",
  "dnsQuery",
  "dns",
  "auth",
  "expect",
  "how",
  "note",
] as const;

export function readQueries(f: Field, endpoints: readonly EndpointSpec[], world: boolean): ScenarioQuery[] {
  const out: ScenarioQuery[] = [];
  const dnsNames = new Set<string>();
  const items = f.seq() ?? [];
  if (items.length === 0 && !world) f.issue("must list at least one query");
  items.forEach((qf, index) => {
    const q = readQuery(qf, index, endpoints, dnsNames, world);
    if (q) out.push(q);
  });
  return out;
}

function readQuery(
  qf: Field,
  index: number,
  endpoints: readonly EndpointSpec[],
  dnsNames: Set<string>,
  world: boolean,
): ScenarioQuery | undefined {
  const m = qf.map(QUERY_FIELDS);
  if (!m) return undefined;
  const need = (k: string): Field | undefined => m.get(k) ?? qf.issue(`missing required field "${k}"`);
  const before = qf.ctx.issues.length;

  const dnsField = m.get("dns");
  const dns = readDns(dnsField, endpoints);
  if (dnsField) dnsNames.clear();
  for (const d of dns) dnsNames.add(dnsKey(d.name));
  const from = readPeerField(need("from"), endpoints, dnsNames);
  const to = readPeerField(need("to"), endpoints, dnsNames);
  const proto = need("proto")?.oneOf(QUERY_PROTOS);
  const http = readHttp(m.get("http"));
  const kafka = readKafka(m.get("kafka"));
  const tlsMap = m.get("tls")?.map(["sni"]);
  const sni = tlsMap
    ? (tlsMap.get("sni")?.str({ nonEmpty: true }) ?? m.get("tls")?.issue(`missing required field "sni"`))
    : undefined;
  const dnsQuery = m.get("dnsQuery")?.str({ nonEmpty: true });
  const auth = m.get("auth")?.bool();
  const note = m.get("note")?.str();
  const expectField = world ? m.get("expect") : need("expect");
  const expect = expectField?.oneOf(["allow", "deny"] as const);
  const howField = m.get("how");
  const how = howField?.oneOf(DENY_HOWS);
  if (how !== undefined && expect === "allow") howField?.issue(`"how" applies only to expect: deny`);

  const l7 = [http && "http", kafka && "kafka", dnsQuery !== undefined && "dnsQuery"].filter(Boolean);
  if (l7.length > 1) qf.issue(`only one of http, kafka, dnsQuery per query (got ${l7.join(", ")})`);
  if (kafka && sni !== undefined) qf.issue("tls cannot be combined with kafka");

  let port: number | undefined;
  let icmpType: number | undefined;
  const portField = m.get("port");
  const icmpField = m.get("icmpType");
  if (proto === "ICMP" || proto === "ICMPv6") {
    if (portField) portField.issue(`${proto} has no ports; use icmpType`);
    icmpType = icmpField ? icmpField.int(0, 255) : qf.issue(`missing required field "icmpType" for ${proto}`);
    if (l7.length > 0 || sni !== undefined) qf.issue(`${proto} queries carry no L7 request`);
  } else if (proto !== undefined && isExtendedProtocol(proto)) {
    if (portField) portField.issue(`${proto} has no ports`);
    if (icmpField) icmpField.issue(`icmpType applies only to ICMP and ICMPv6, not ${proto}`);
    if (l7.length > 0 || sni !== undefined) qf.issue(`${proto} queries carry no L7 request`);
  } else if (proto !== undefined) {
    if (icmpField) icmpField.issue(`icmpType applies only to ICMP and ICMPv6, not ${proto}`);
    if (portField) port = portField.int(1, 65535);
    else if (dnsQuery !== undefined) port = 53;
    else qf.issue(`missing required field "port" for ${proto}`);
    if ((http || kafka || sni !== undefined) && proto !== "TCP")
      qf.issue(`http, kafka and tls requests need proto TCP`);
    if (dnsQuery !== undefined && proto !== "UDP" && proto !== "TCP")
      qf.issue("dnsQuery needs proto UDP or TCP");
  }

  if (qf.ctx.issues.length > before || from === undefined || to === undefined || proto === undefined)
    return undefined;
  const line = qf.line;
  return {
    index,
    ...(line !== undefined ? { line } : {}),
    from,
    to,
    proto,
    ...(port !== undefined ? { port } : {}),
    ...(icmpType !== undefined ? { icmpType } : {}),
    ...(http ? { http } : {}),
    ...(kafka ? { kafka } : {}),
    ...(sni !== undefined ? { tls: { sni } } : {}),
    ...(dnsQuery !== undefined ? { dnsQuery } : {}),
    ...(dnsField ? { dns } : {}),
    ...(auth !== undefined ? { auth } : {}),
    expect: expect ?? "allow",
    ...(how !== undefined ? { how } : {}),
    ...(note !== undefined ? { note } : {}),
  };
}

function readPeerField(
  f: Field | undefined,
  endpoints: readonly EndpointSpec[],
  dnsNames: ReadonlySet<string>,
): string | undefined {
  const text = f?.str({ nonEmpty: true });
  if (!f || text === undefined) return undefined;
  const p = parsePeer(text);
  if ("error" in p) return f.issue(p.error);
  if (p.kind === "endpoint") {
    const e = findEndpoint(endpoints, p);
    if ("error" in e) return f.issue(e.error);
  }
  if (p.kind === "fqdn" && !dnsNames.has(dnsKey(p.name))) {
    return f.issue(
      `no DNS answer for "${p.name}" seen before this query (a query's dns: lists every answer seen so far; without dns: the previous query's set holds); add {name: ${p.name}, ips: [...]} to its dns:`,
    );
  }
  return text;
}

function readDns(f: Field | undefined, endpoints: readonly EndpointSpec[]): DnsObservation[] {
  const out: DnsObservation[] = [];
  for (const df of f?.seq() ?? []) {
    const m = df.map(["name", "ips", "by", "ttl"]);
    if (!m) continue;
    const name = m.get("name")?.str({ nonEmpty: true }) ?? df.issue(`missing required field "name"`);
    if (name !== undefined && !/^[a-zA-Z0-9_.-]+$/.test(name))
      m.get("name")?.issue(`"${name}" is not a DNS name`);
    const ipsField = m.get("ips");
    const ips: string[] = [];
    if (!ipsField) df.issue(`missing required field "ips"`);
    for (const ipf of ipsField?.seq() ?? []) {
      const s = ipf.str();
      if (s !== undefined && parseAddr(s) === undefined) ipf.issue(`"${s}" is not an IP address`);
      else if (s !== undefined) ips.push(s);
    }
    if (ipsField?.seq()?.length === 0) ipsField.issue("must list at least one address");
    const byField = m.get("by");
    const by = byField?.str({ nonEmpty: true });
    if (byField && by !== undefined) {
      const p = parsePeer(by);
      if ("error" in p || p.kind !== "endpoint") byField.issue(`"${by}" must name an endpoint`);
      else {
        const e = findEndpoint(endpoints, p);
        if ("error" in e) byField.issue(e.error);
      }
    }
    const ttl = m.get("ttl")?.int(0, 2 ** 31 - 1);
    if (name === undefined) continue;
    out.push({ name, ips, ...(by !== undefined ? { by } : {}), ...(ttl !== undefined ? { ttl } : {}) });
  }
  return out;
}

function readHttp(f: Field | undefined): HttpRequest | undefined {
  const m = f?.map(["method", "path", "host", "headers"]);
  if (!f || !m) return undefined;
  const method = m.get("method")?.str({ nonEmpty: true }) ?? f.issue(`missing required field "method"`);
  const path = m.get("path")?.str({ nonEmpty: true }) ?? f.issue(`missing required field "path"`);
  const host = m.get("host")?.str({ nonEmpty: true });
  const headers = m.get("headers")?.stringMap();
  if (method === undefined || path === undefined) return undefined;
  if (!path.startsWith("/")) return m.get("path")?.issue(`"${path}" must start with /`);
  return {
    method,
    path,
    ...(host !== undefined ? { host } : {}),
    ...(headers !== undefined ? { headers } : {}),
  };
}

function readKafka(f: Field | undefined): KafkaRequest | undefined {
  const m = f?.map(["apiKey", "apiVersion", "clientID", "topic"]);
  if (!f || !m) return undefined;
  const keyField = m.get("apiKey");
  let apiKey: string | number | undefined;
  if (!keyField) f.issue(`missing required field "apiKey"`);
  else if (typeof (keyField.node as { value?: unknown } | null)?.value === "number")
    apiKey = keyField.int(0, 32767);
  else apiKey = keyField.str({ nonEmpty: true });
  const apiVersion = m.get("apiVersion")?.int(0, 32767);
  const clientID = m.get("clientID")?.str();
  const topic = m.get("topic")?.str({ nonEmpty: true });
  if (apiKey === undefined) return undefined;
  return {
    apiKey,
    ...(apiVersion !== undefined ? { apiVersion } : {}),
    ...(clientID !== undefined ? { clientID } : {}),
    ...(topic !== undefined ? { topic } : {}),
  };
}
