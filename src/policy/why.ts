/**
 * "Why was this dropped?" — in words, with the smallest policy change that
 * would allow it, checked before it is proposed.
 *
 *   FlowQuery --decide--> which side denied, and why
 *     default deny -> propose one allow rule: exactly this peer, this protocol and port
 *     deny rule    -> name it: deny beats every allow, so only narrowing it helps
 *     auth / L7    -> say what is missing
 *   proposal --fork of the engine + proposal--> decide again: "verified" only if allowed
 *
 * Pure: works on a PolicyEngine and returns text.
 */
import { stringify } from "yaml";
import { POD_NAMESPACE_LABEL } from "../labels/k8s.js";
import { parsePolicies } from "./api/index.js";
import { originText, protoNumber, queryPort } from "./decide.js";
import type { PolicyEngine, ResolvedPeer } from "./engine.js";
import type { RemoteEndpoint } from "./endpoint-table.js";
import { policyRefString } from "./types.js";
import type { Decision, DirectionDecision, FlowQuery } from "./query.js";

export interface WhyAnswer {
  readonly verdict: "allow" | "deny";
  /** The explanation, one sentence per line. */
  readonly lines: readonly string[];
  /** A policy (YAML) that would allow the flow, when a new allow can. */
  readonly proposal?: string;
  /** The proposal was applied to a copy of the policy state and the flow was then allowed. */
  readonly verified?: boolean;
}

export function explainDrop(engine: PolicyEngine, q: FlowQuery): WhyAnswer {
  const d = engine.decide(q);
  const src = engine.resolvePeer(q.from);
  const dst = engine.resolvePeer(q.to);
  const what = `${peerName(src)} -> ${peerName(dst)} ${q.proto}${q.proto.startsWith("ICMP") ? ` type ${queryPort(q)}` : `/${queryPort(q)}`}`;
  if (d.verdict === "allow") {
    return { verdict: "allow", lines: [`${what} is allowed by the current policies; nothing to change.`] };
  }
  const side = d.egress.verdict === "deny" ? d.egress : d.ingress;
  const local = side.direction === "egress" ? src : dst;
  const remote = side.direction === "egress" ? dst : src;
  // A pod on another node (cluster mode): named and matched by its labels, not its address.
  const remoteEp =
    remote.ip !== undefined && !remote.endpoint
      ? engine.remoteEndpoints().find((r) => r.spec.ip === remote.ip)
      : undefined;
  const lines = [`${what} is denied by the ${side.direction} policy of ${peerName(local)}.`];
  switch (side.reason) {
    case "policy-denied":
      lines.push(`A deny rule matches: ${side.decidedBy.map(originText).join(", ")}.`);
      lines.push("Deny rules win over every allow, so no added allow can let this through:");
      lines.push("narrow that deny rule (its peers or ports) or remove it.");
      return { verdict: "deny", lines };
    case "auth-required":
      lines.push(
        `The allowing rule ${side.decidedBy.map(originText).join(", ")} requires mutual authentication,`,
      );
      lines.push("and no authenticated session exists between the two identities.");
      return { verdict: "deny", lines };
    case "l7-denied":
      lines.push(
        `The connection is allowed, but the ${side.l7?.parser ?? "L7"} rules of ${side.decidedBy.map(originText).join(", ")} refused the request.`,
      );
      if (q.http)
        lines.push(
          `The request was ${JSON.stringify(`${q.http.method} ${q.http.path}`).slice(1, -1)}. To allow it, add to the http rules of that port:`,
          // The request came from the network: quoted (JSON escapes are YAML double-quoted
          // escapes), so no byte of it reaches the terminal or the YAML unescaped; the path
          // is a whole-string regex, so its metacharacters are escaped.
          `  - method: ${JSON.stringify(q.http.method)}`,
          `    path: ${JSON.stringify((q.http.path.split("?")[0] ?? "/").replace(/[.*+?^$()|[\]\\{}]/g, "\\$&"))}`,
        );
      else lines.push("Add a rule for this request to those L7 rules.");
      return { verdict: "deny", lines };
    default:
      break;
  }
  const selecting = new Set(
    engine
      .rulesSelecting(local.identity.id)
      .filter((r) => r.defaultDeny[side.direction])
      .map((r) => policyRefString(r.policy)),
  );
  const by = selecting.size > 0 ? [...selecting].join(", ") : "a policy";
  lines.push(
    `The ${side.direction} direction is in default deny (${by} selecting ${peerName(local)} has ${side.direction} rules) and no rule allows ${peerName(remote, remoteEp)} on this port.`,
  );
  const proposal = proposeAllow(side, local, remote, q, remoteEp);
  if (!proposal) {
    lines.push("Membrane cannot write an allow for this peer automatically; allow it in a rule of your own.");
    return { verdict: "deny", lines };
  }
  const verified = verify(engine, proposal, q);
  lines.push(
    verified.verdict === "allow"
      ? "This policy would allow it (checked against a copy of the current policy state):"
      : `This policy alone would not be enough: the flow would still be denied (${verified.how ?? "drop"}) by the other side.`,
  );
  return { verdict: "deny", lines, proposal, verified: verified.verdict === "allow" };
}

function verify(engine: PolicyEngine, yaml: string, q: FlowQuery): Decision {
  const fork = engine.fork();
  for (const res of parsePolicies(yaml, "proposal.yaml", { meshAuth: engine.config.meshAuth }))
    fork.upsertPolicy(res);
  return fork.decide(q);
}

function proposeAllow(
  side: DirectionDecision,
  local: ResolvedPeer,
  remote: ResolvedPeer,
  q: FlowQuery,
  remoteEp: RemoteEndpoint | undefined,
): string | undefined {
  const ep = local.endpoint;
  if (!ep) return undefined;
  const dir = side.direction;
  const peer = peerField(dir, remote, ep.spec.namespace, remoteEp);
  if (!peer) return undefined;
  const proto = q.proto;
  const element: Record<string, unknown> = { ...peer };
  if (proto === "ICMP" || proto === "ICMPv6") {
    element["icmps"] = [{ fields: [{ family: proto === "ICMP" ? "IPv4" : "IPv6", type: queryPort(q) }] }];
  } else if (protoNumber(proto) !== 0) {
    element["toPorts"] = [{ ports: [{ port: String(queryPort(q)), protocol: proto }] }];
  }
  const remoteName =
    remote.endpoint?.spec.name ??
    (remote.isHost ? "host" : (remote.ip ?? "peer")).replace(/[^a-z0-9]+/gi, "-");
  const doc = {
    apiVersion: "cilium.io/v2",
    kind: "CiliumNetworkPolicy",
    metadata: {
      name: `allow-${dir === "ingress" ? `${remoteName}-to-${ep.spec.name}` : `${ep.spec.name}-to-${remoteName}`}-${String(q.proto).toLowerCase()}-${queryPort(q)}`
        .slice(0, 63)
        .replace(/-+$/, ""),
      namespace: ep.spec.namespace,
    },
    spec: {
      description: `Proposed by membrane policy why: allow ${dir} ${remoteName} on ${q.proto}/${queryPort(q)} only.`,
      endpointSelector: { matchLabels: { ...ep.spec.labels } },
      [dir]: [element],
    },
  };
  return stringify(doc);
}

/** The narrowest peer field for the remote side: its labels, its entity, or its address. */
function peerField(
  dir: "ingress" | "egress",
  remote: ResolvedPeer,
  ns: string,
  remoteEp?: RemoteEndpoint,
): Record<string, unknown> | undefined {
  const key = dir === "ingress" ? "from" : "to";
  const spec = remote.endpoint?.spec ?? remoteEp?.spec;
  if (spec) {
    const labels: Record<string, string> = { ...spec.labels };
    if (spec.namespace !== ns) labels[`k8s:${POD_NAMESPACE_LABEL}`] = spec.namespace;
    return { [`${key}Endpoints`]: [{ matchLabels: labels }] };
  }
  if (remote.isHost) return { [`${key}Entities`]: ["host"] };
  const id = remote.identity;
  if (id.labels.has("reserved", "remote-node")) return { [`${key}Entities`]: ["remote-node"] };
  if (remote.ip && id.labels.has("reserved", "world")) {
    return { [`${key}CIDR`]: [remote.ip.includes(":") ? `${remote.ip}/128` : `${remote.ip}/32`] };
  }
  return undefined;
}

function peerName(p: ResolvedPeer, remoteEp?: RemoteEndpoint): string {
  if (remoteEp) {
    const labels = Object.entries(remoteEp.spec.labels).map(([k, v]) => `${k}=${v}`);
    return `${remoteEp.spec.ip} (a pod of ${remoteEp.spec.namespace} on another node: ${labels.join(",")})`;
  }
  return p.endpoint ? p.endpoint.key : p.isHost ? "host" : (p.ip ?? `identity ${p.identity.id}`);
}
