/**
 * Kubernetes NetworkPolicy -> PolicyResource with one Cilium rule (semantics §9).
 *
 *   podSelector + namespace                    -> subject
 *   ingress[i].from[j] / egress[i].to[j]       -> one element each, ports copied
 *   no from/to                                 -> peers [{kind: all}]
 *   namespaceSelector key k                    -> k8s:io.cilium.k8s.namespace.labels.k
 *   policyTypes without rules                  -> [{}] (deny all in that direction)
 */
import { NAMESPACE_LABELS_PREFIX } from "../../labels/k8s.js";
import { type Requirement, Selector } from "../../labels/selector.js";
import type {
  Direction,
  PeerSelector,
  PolicyRef,
  PolicyResource,
  PortRule,
  Protocol,
  RuleElement,
} from "../types.js";
import type { Fields, Val } from "./fields.js";
import { readMetadata } from "./metadata.js";
import { readCidrRule } from "./peers.js";
import { readPortValue } from "./ports.js";
import { NAMESPACE_EXISTS, namespaceIs, readSelector, scopeSubject } from "./selector.js";

export const KNP_FIELDS = ["apiVersion", "kind", "metadata", "spec", "status"];
const KNP_PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

export function readNetworkPolicy(doc: Fields): PolicyResource | undefined {
  const meta = readMetadata(doc, "NetworkPolicy");
  const v = doc.self;
  const before = v.ctx.problems.length;
  const ns = meta?.namespace ?? "default";
  const policy: PolicyRef = { kind: "NetworkPolicy", name: meta?.name ?? "", namespace: ns };
  const spec = doc.need("spec")?.map(["podSelector", "ingress", "egress", "policyTypes"]);
  if (!spec) return undefined;
  const podVal = spec.get("podSelector");
  const podSel = podVal ? k8sKeys(podVal, "") : Selector.ALL;

  const typesVal = spec.get("policyTypes");
  const types = typesVal ? readPolicyTypes(typesVal) : undefined;
  const hasIngress = spec.nonEmpty("ingress");
  const hasEgress = spec.nonEmpty("egress");
  const effective = types ?? (hasEgress ? ["Ingress", "Egress"] : ["Ingress"]);
  if (types && hasIngress && !types.includes("Ingress")) {
    typesVal?.error(
      'ingress rules are given but policyTypes does not list "Ingress"; add it or remove the rules',
    );
  }
  if (types && hasEgress && !types.includes("Egress")) {
    typesVal?.error(
      'egress rules are given but policyTypes does not list "Egress"; add it or remove the rules',
    );
  }

  const ingress = readKnpRules(spec.get("ingress"), "ingress", policy);
  const egress = readKnpRules(spec.get("egress"), "egress", policy);
  const denyAll = (dir: string): RuleElement => ({
    origin: { policy, path: typesVal ? typesVal.rel : childRel(spec.self.rel, dir), deny: false },
    peers: [],
    requires: [],
  });
  if (!hasIngress && (effective.includes("Ingress") || !effective.includes("Egress")))
    ingress.push(denyAll("ingress"));
  if (!hasEgress && effective.includes("Egress")) egress.push(denyAll("egress"));

  if (!meta || !podSel || v.ctx.problems.length > before) return undefined;
  return {
    ref: policy,
    rules: [
      {
        policy,
        path: spec.self.rel,
        subject: scopeSubject(podSel, ns),
        selectsNodes: false,
        ingress,
        ingressDeny: [],
        egress,
        egressDeny: [],
        defaultDeny: { ingress: ingress.length > 0, egress: egress.length > 0 },
      },
    ],
    source: { file: v.ctx.file, line: v.line },
    audit: meta.audit,
  };
}

function childRel(rel: string, key: string): string {
  return rel === "" ? key : `${rel}.${key}`;
}

function readPolicyTypes(v: Val): string[] | undefined {
  const out: string[] = [];
  for (const item of v.list() ?? []) {
    const t = item.str();
    if (t === "Ingress" || t === "Egress") out.push(t);
    else if (t !== undefined) item.error(`unknown policy type "${t}"; use Ingress or Egress`);
  }
  return out;
}

function readKnpRules(v: Val | undefined, dir: Direction, policy: PolicyRef): RuleElement[] {
  const out: RuleElement[] = [];
  const peersField = dir === "ingress" ? "from" : "to";
  for (const item of v?.list() ?? []) {
    const m = item.map([peersField, "ports"]);
    if (!m) continue;
    const ports = readKnpPorts(m.get("ports"));
    const peerItems = m.get(peersField)?.list() ?? [];
    const origin = (at: Val) => ({ policy, path: at.rel, deny: false });
    const withPorts = ports && ports.length > 0 ? { ports } : {};
    if (peerItems.length === 0) {
      out.push({ origin: origin(item), peers: [{ kind: "all" }], requires: [], ...withPorts });
      continue;
    }
    for (const p of peerItems) {
      const peer = readKnpPeer(p, policy.namespace ?? "default");
      if (peer) out.push({ origin: origin(p), peers: [peer], requires: [], ...withPorts });
    }
  }
  return out;
}

function readKnpPeer(v: Val, ns: string): PeerSelector | undefined {
  const m = v.map(["podSelector", "namespaceSelector", "ipBlock"]);
  if (!m) return undefined;
  const pod = m.get("podSelector");
  const nsSel = m.get("namespaceSelector");
  const ip = m.get("ipBlock");
  if (ip) {
    if (pod || nsSel)
      return v.error("ipBlock cannot be combined with podSelector or namespaceSelector in one peer");
    return readCidrRule(ip, true);
  }
  if (!pod && !nsSel) return v.error("a peer needs podSelector, namespaceSelector or ipBlock");
  const podPart = pod ? k8sKeys(pod, "") : Selector.ALL;
  if (!nsSel) return podPart && { kind: "endpoints", selector: podPart.and(namespaceIs(ns)) };
  const nsPart = k8sKeys(nsSel, NAMESPACE_LABELS_PREFIX);
  if (!podPart || !nsPart) return undefined;
  const scoped = nsPart.isEmpty() ? [NAMESPACE_EXISTS] : nsPart.requirements;
  return { kind: "endpoints", selector: podPart.and(...scoped) };
}

/** A Kubernetes selector: plain keys, which become `k8s:<prefix><key>`. */
function k8sKeys(v: Val, prefix: string): Selector | undefined {
  const sel = readSelector(v);
  if (!sel) return undefined;
  const reqs: Requirement[] = [];
  for (const r of sel.requirements) {
    if (r.source !== "any") {
      return v.error(
        `label key "${r.source}:${r.key}" has a source prefix; NetworkPolicy keys are plain Kubernetes label keys`,
      );
    }
    reqs.push({ ...r, source: "k8s", key: prefix + r.key });
  }
  return new Selector(reqs);
}

function readKnpPorts(v: Val | undefined): PortRule[] | undefined {
  if (v === undefined) return undefined;
  const out: PortRule[] = [];
  for (const item of v.list() ?? []) {
    const m = item.map(["protocol", "port", "endPort"]);
    if (!m) continue;
    const protoVal = m.get("protocol");
    const proto = protoVal?.str() ?? "TCP";
    if (!(KNP_PROTOCOLS as readonly string[]).includes(proto)) {
      protoVal?.error(`unknown protocol "${proto}"; NetworkPolicy allows TCP, UDP or SCTP`);
      continue;
    }
    const protocol = proto as Protocol;
    const portVal = m.get("port");
    const port = readPortValue(portVal, true);
    const endVal = m.get("endPort");
    let endPort = port?.port ?? 0;
    if (endVal) {
      const e = endVal.int(1, 65535);
      if (port === undefined || e === undefined) continue;
      if (port.name !== undefined || portVal === undefined) {
        endVal.error("endPort needs a numeric port");
        continue;
      }
      if (e < port.port) {
        endVal.error(`endPort ${e} is below port ${port.port}`);
        continue;
      }
      endPort = e;
    }
    if (!port) continue;
    const pp =
      port.name !== undefined
        ? { protocol, port: 0, endPort: 0, name: port.name }
        : { protocol, port: port.port, endPort };
    out.push({ ports: [pp] });
  }
  return out;
}
