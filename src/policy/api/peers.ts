/**
 * The L3 part of a rule element: who the peer is.
 *
 *   fromEndpoints / toEndpoints  -> {kind: endpoints} (namespace-scoped, §3)
 *   fromRequires / toRequires    -> requirements (never peers)
 *   from/toEntities              -> {kind: entity}
 *   from/toCIDR, from/toCIDRSet  -> {kind: cidr}
 *   toServices                   -> {kind: service}
 *   toFQDNs                      -> {kind: fqdn}
 */
import { type Prefix, containsPrefix, parsePrefix, prefixString } from "../../labels/cidr.js";
import type { Requirement } from "../../labels/selector.js";
import { ENTITIES, type Entity, type PeerSelector } from "../types.js";
import type { Fields, Val } from "./fields.js";
import { checkFqdn, checkLabelName, normaliseFqdn } from "./names.js";
import { type ElementScope, notSupported } from "./scope.js";
import { readSelector, scopePeer } from "./selector.js";
import { didYouMean } from "./suggest.js";

export const INGRESS_L3 = [
  "fromEndpoints",
  "fromCIDR",
  "fromCIDRSet",
  "fromEntities",
  "fromNodes",
  "fromGroups",
];
export const EGRESS_L3 = [
  "toEndpoints",
  "toCIDR",
  "toCIDRSet",
  "toEntities",
  "toServices",
  "toFQDNs",
  "toNodes",
  "toGroups",
];

export interface PeersResult {
  readonly peers: PeerSelector[];
  readonly requires: Requirement[];
  /** Some L3 field (or requires) was written, even as an empty list. */
  readonly hasL3: boolean;
}

export function readPeers(m: Fields, s: ElementScope): PeersResult {
  const from = s.dir === "ingress";
  const l3 = from ? INGRESS_L3 : EGRESS_L3;
  const req = from ? "fromRequires" : "toRequires";
  const peers: PeerSelector[] = [];
  const requires: Requirement[] = [];

  const used = l3.filter((f) => m.nonEmpty(f));
  if (used.length > 1) {
    const [a = "", b = ""] = used;
    m.self.error(`Combining ${a} and ${b} in one rule is not supported by Cilium; use two rules`);
  } else if (used[0] === "toFQDNs" && m.nonEmpty(req)) {
    m.self.error(`Combining toFQDNs and ${req} in one rule is not supported by Cilium; use two rules`);
  }

  for (const f of ["fromGroups", "toGroups"]) {
    m.get(f)?.unsupported(notSupported(f));
  }
  const nodesField = m.get(from ? "fromNodes" : "toNodes");
  for (const item of nodesField?.list() ?? []) {
    const sel = readSelector(item);
    if (sel) peers.push({ kind: "nodes", selector: sel });
  }

  for (const item of m.get(from ? "fromEndpoints" : "toEndpoints")?.list() ?? []) {
    const sel = readSelector(item);
    if (sel) peers.push({ kind: "endpoints", selector: scopePeer(sel, s.namespace, false) });
  }
  for (const item of m.get(req)?.list() ?? []) {
    const sel = readSelector(item);
    if (sel) requires.push(...scopePeer(sel, s.namespace, true).requirements);
  }
  for (const item of m.get(from ? "fromEntities" : "toEntities")?.list() ?? []) {
    const e = readEntity(item);
    if (e) peers.push({ kind: "entity", entity: e });
  }
  for (const item of m.get(from ? "fromCIDR" : "toCIDR")?.list() ?? []) {
    const text = item.str();
    if (text === undefined) continue;
    const prefix = parsePrefix(text.trim(), true);
    if (prefix) peers.push({ kind: "cidr", prefix, except: [] });
    else
      item.error(`invalid CIDR "${text}": write an address or a prefix such as 10.0.0.0/8 or 2001:db8::/32`);
  }
  for (const item of m.get(from ? "fromCIDRSet" : "toCIDRSet")?.list() ?? []) {
    const p = readCidrRule(item);
    if (p) peers.push(p);
  }
  if (!from) {
    for (const item of m.get("toServices")?.list() ?? []) {
      const p = readService(item, s);
      if (p) peers.push(p);
    }
    for (const item of m.get("toFQDNs")?.list() ?? []) {
      const p = readFqdnSelector(item);
      if (p) peers.push(p);
    }
  }
  const hasL3 = [...l3, req].some((f) => m.has(f));
  return { peers, requires, hasL3 };
}

function readEntity(v: Val): Entity | undefined {
  const e = v.str();
  if (e === undefined) return undefined;
  if ((ENTITIES as readonly string[]).includes(e)) return e as Entity;
  const hint = didYouMean(e, ENTITIES);
  return v.error(
    `unknown entity "${e}"` +
      (hint ? `; did you mean "${hint}"?` : `; known entities: ${ENTITIES.join(", ")}`),
  );
}

/** A CIDR prefix (not a bare address) as `cidr` and `except` entries require. */
function readPrefix(v: Val): Prefix | undefined {
  const text = v.str();
  if (text === undefined) return undefined;
  const p = parsePrefix(text.trim(), false);
  if (!p) return v.error(`invalid CIDR "${text}": write a prefix such as 10.0.0.0/8 or 2001:db8::/32`);
  return p;
}

/** `{cidr, except}` (CNP from/toCIDRSet and KNP ipBlock). */
export function readCidrRule(v: Val, knp = false): PeerSelector | undefined {
  const m = v.map(knp ? ["cidr", "except"] : ["cidr", "except", "cidrGroupRef", "cidrGroupSelector"]);
  if (!m) return undefined;
  for (const f of ["cidrGroupRef", "cidrGroupSelector"]) m.get(f)?.unsupported(notSupported(f));
  if (!knp && (m.has("cidrGroupRef") || m.has("cidrGroupSelector"))) return undefined;
  const cidrVal = m.need("cidr");
  const cidr = cidrVal && readPrefix(cidrVal);
  const except: Prefix[] = [];
  let ok = cidr !== undefined;
  for (const item of m.get("except")?.list() ?? []) {
    const p = readPrefix(item);
    if (!p) {
      ok = false;
    } else if (cidr && !containsPrefix(cidr, p)) {
      item.error(`except ${prefixString(p)} is not inside cidr ${prefixString(cidr)}`);
      ok = false;
    } else {
      except.push(p);
    }
  }
  return ok && cidr ? { kind: "cidr", prefix: cidr, except } : undefined;
}

function readService(v: Val, s: ElementScope): PeerSelector | undefined {
  const m = v.map(["k8sService", "k8sServiceSelector"]);
  if (!m) return undefined;
  const byName = m.get("k8sService");
  const bySel = m.get("k8sServiceSelector");
  if ((byName === undefined) === (bySel === undefined)) {
    return v.error("give exactly one of k8sService or k8sServiceSelector");
  }
  const inner = (byName ?? bySel) as Val;
  const f = inner.map(byName ? ["serviceName", "namespace"] : ["selector", "namespace"]);
  if (!f) return undefined;
  const nsVal = f.get("namespace");
  let namespace = nsVal?.str() ?? s.namespace;
  if (nsVal && namespace !== undefined) {
    const bad = checkLabelName(namespace);
    if (bad) namespace = nsVal.error(bad);
  } else if (namespace === undefined && !nsVal) {
    return inner.error('a clusterwide policy must name the service\'s namespace (field "namespace")');
  }
  if (byName) {
    const name = f.need("serviceName")?.str();
    if (name === undefined || namespace === undefined) return undefined;
    return { kind: "service", namespace, name };
  }
  const selVal = f.need("selector");
  const selector = selVal && readSelector(selVal);
  if (!selector || namespace === undefined) return undefined;
  return { kind: "service", namespace, selector };
}

function readFqdnSelector(v: Val): PeerSelector | undefined {
  const m = v.map(["matchName", "matchPattern"]);
  if (!m) return undefined;
  const name = m.get("matchName");
  const pattern = m.get("matchPattern");
  if ((name === undefined) === (pattern === undefined)) {
    return v.error("give exactly one of matchName or matchPattern");
  }
  const field = (name ?? pattern) as Val;
  const text = field.str();
  if (text === undefined) return undefined;
  const bad = checkFqdn(text, pattern !== undefined);
  if (bad) return field.error(bad);
  return name
    ? { kind: "fqdn", matchName: normaliseFqdn(text) }
    : { kind: "fqdn", matchPattern: normaliseFqdn(text) };
}
