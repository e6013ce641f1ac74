/**
 * The CLI side of Gateway API and Ingress resources:
 *
 *   membrane apply|delete -f FILE        a file of GatewayClass / Gateway / HTTPRoute / GRPCRoute /
 *                                        ReferenceGrant / Ingress documents -> /v1/gateway
 *   membrane get gateways,httproutes     each with its status conditions (-o yaml as Kubernetes shows it)
 */
import { MembraneError } from "../../errors.js";
import { parseGatewayResources } from "../../gateway/parse.js";
import type { CliContext } from "../context.js";
import { client, show, type ViewFormat } from "../agent-client.js";

export async function applyGateway(
  ctx: CliContext,
  o: { dryRun?: boolean; socket: string; output: ViewFormat },
  text: string,
  file: string,
  method: "POST" | "DELETE",
): Promise<void> {
  const rs = parseGatewayResources(text, file);
  if (o.dryRun) {
    ctx.out(`${file}: ${rs.length} Gateway API / Ingress resources valid (dry run, nothing applied)\n`);
    return;
  }
  const r = (await client(o).request(method, "/v1/gateway", { text, file })) as {
    resources: { kind: string; namespace?: string; name: string; status: string }[];
  };
  show(ctx, o.output, r, () =>
    r.resources.map((x) => [
      `${x.kind.toLowerCase()}/${x.namespace ? x.namespace + "/" : ""}${x.name}`,
      x.status,
    ]),
  );
}

const NAMES: Record<string, string> = {
  gatewayclasses: "GatewayClass",
  gatewayclass: "GatewayClass",
  gc: "GatewayClass",
  gateways: "Gateway",
  gateway: "Gateway",
  gtw: "Gateway",
  httproutes: "HTTPRoute",
  httproute: "HTTPRoute",
  grpcroutes: "GRPCRoute",
  grpcroute: "GRPCRoute",
  referencegrants: "ReferenceGrant",
  referencegrant: "ReferenceGrant",
  ingresses: "Ingress",
  ingress: "Ingress",
  ing: "Ingress",
};

/** `gateways,httproutes` -> the kinds; undefined when `what` names no gateway kind. */
export function gatewayKinds(what: string): string[] | undefined {
  const parts = what.split(",").map((s) => s.trim().toLowerCase());
  if (!parts.some((p) => NAMES[p])) return undefined;
  const bad = parts.filter((p) => !NAMES[p]);
  if (bad.length > 0)
    throw new MembraneError("CLI_USAGE", `Cannot show ${bad.join(",")}: not a Gateway API or Ingress kind`, {
      hint: `use ${Object.keys(NAMES)
        .filter((k) => k.endsWith("s"))
        .join(", ")}`,
    });
  return [...new Set(parts.map((p) => NAMES[p] as string))];
}

type Cond = { type: string; status: string; reason: string };
type Res = { kind: string; namespace?: string; name: string; status: Record<string, unknown> };

export async function getGateways(
  ctx: CliContext,
  o: { socket: string; output: ViewFormat },
  kinds: string[],
): Promise<void> {
  const r = (await client(o).request("GET", `/v1/gateway?kinds=${kinds.join(",")}`)) as {
    address?: string;
    resources: Res[];
  };
  const docs = r.resources.map((x) => ({
    apiVersion: x.kind === "Ingress" ? "networking.k8s.io/v1" : "gateway.networking.k8s.io/v1",
    kind: x.kind,
    metadata: { name: x.name, ...(x.namespace !== undefined ? { namespace: x.namespace } : {}) },
    status: x.status,
  }));
  show(ctx, o.output, docs, () => [["KIND", "NAMESPACE", "NAME", "CONDITIONS"], ...r.resources.map(row)]);
}

function conds(cs: unknown): string {
  return ((cs ?? []) as Cond[])
    .map((c) => `${c.type}=${c.status}${c.status === "True" ? "" : `(${c.reason})`}`)
    .join(" ");
}

function row(x: Res): string[] {
  const s = x.status;
  let text: string;
  if (x.kind === "HTTPRoute" || x.kind === "GRPCRoute")
    text = ((s["parents"] ?? []) as { parentRef: { name: string }; conditions: unknown }[])
      .map((p) => `${p.parentRef.name}: ${conds(p.conditions)}`)
      .join("; ");
  else if (x.kind === "Gateway") {
    const addrs = ((s["addresses"] ?? []) as { value: string }[]).map((a) => a.value).join(",");
    const ls = ((s["listeners"] ?? []) as { name: string; attachedRoutes: number; conditions: unknown }[])
      .map((l) => `${l.name}[${l.attachedRoutes} routes ${conds(l.conditions)}]`)
      .join(" ");
    text = `${conds(s["conditions"])} address=${addrs || "-"} ${ls}`;
  } else if (x.kind === "Ingress")
    text = `address=${((s["loadBalancer"] as { ingress?: { ip: string }[] } | undefined)?.ingress ?? []).map((i) => i.ip).join(",") || "-"}`;
  else text = conds(s["conditions"]) || "-";
  return [x.kind, x.namespace ?? "-", x.name, text];
}
