/** `membrane get endpoints|identities|policies|ipcache|status|tracingpolicies|nodes|services`, and Gateway API kinds (gateway-cli.ts). */
import { encryptionSummaryRows } from "./encryption.js";
import type { EncryptionStatus } from "../../encryption/status.js";
import { Command, Argument } from "commander";
import { MembraneError } from "../../errors.js";
import type { EndpointView } from "../../agent/agent.js";
import type { CliContext } from "../context.js";
import { client, outputOption, show, socketOption, type ViewFormat } from "../agent-client.js";
import { endpointRows } from "./endpoint.js";
import { tracingRows } from "./apply-tracing.js";
import type { TracingPolicyStatus } from "../../runtime/enforce/enforcer.js";

import { nodeRows } from "./get-nodes.js";
import { gatewayKinds, getGateways } from "./gateway-cli.js";
import { serviceRows } from "./apply-lb.js";
import type { ServiceView } from "../../lb/types.js";
import type { NodeView } from "../../cluster/routes.js";

type Row = Record<string, unknown>;

const WHAT = [
  "endpoints",
  "identities",
  "policies",
  "ipcache",
  "status",
  "tracingpolicies",
  "nodes",
  "services",
];

export function getCommand(ctx: CliContext): Command {
  return new Command("get")
    .description("show what the agent holds")
    .addArgument(
      new Argument(
        "<what>",
        `what to show: ${WHAT.join(", ")}, or Gateway API kinds, comma-separated (gatewayclasses, gateways, httproutes, grpcroutes, referencegrants, ingresses)`,
      ),
    )
    .addOption(socketOption())
    .addOption(outputOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ membrane get endpoints\n  $ membrane get policies -o yaml\n  $ membrane get services -o json\n  $ membrane get gateways,httproutes -o yaml\n",
    )
    .action(async (what: string, o: { socket: string; output: ViewFormat }) => {
      const kinds = gatewayKinds(what);
      if (kinds) return getGateways(ctx, o, kinds);
      if (!WHAT.includes(what))
        throw new MembraneError("CLI_USAGE", `Cannot show ${what}: not something the agent holds`, {
          hint: `use one of ${WHAT.join(", ")}, gateways, httproutes, ...`,
        });
      const c = client(o);
      switch (what) {
        case "endpoints": {
          const eps = (await c.request("GET", "/v1/endpoints")) as EndpointView[];
          return show(ctx, o.output, eps, () => endpointRows(eps));
        }
        case "identities": {
          const ids = (await c.request("GET", "/v1/identities")) as {
            id: number;
            labels: string[];
            endpoints: string[];
          }[];
          return show(ctx, o.output, ids, () => [
            ["ID", "ENDPOINTS", "LABELS"],
            ...ids.map((i) => [String(i.id), i.endpoints.join(",") || "-", i.labels.join(",")]),
          ]);
        }
        case "policies": {
          const ps = (await c.request("GET", "/v1/policies")) as Row[];
          return show(ctx, o.output, ps, () => [
            ["KIND", "NAMESPACE", "NAME", "RULES", "SELECTS", "AUDIT"],
            ...ps.map((p) => [
              String(p["kind"]),
              String(p["namespace"] ?? "-"),
              String(p["name"]),
              String(p["rules"]),
              `${String(p["selects"])} endpoints`,
              p["audit"] ? "yes" : "no",
            ]),
          ]);
        }
        case "tracingpolicies": {
          const ps = (await c.request("GET", "/v1/tracingpolicies")) as TracingPolicyStatus[];
          return show(ctx, o.output, ps, () => tracingRows(ps));
        }
        case "services": {
          const vs = (await c.request("GET", "/v1/lb/services")) as ServiceView[];
          return show(ctx, o.output, vs, () => serviceRows(vs));
        }
        case "nodes": {
          const ns = (await c.request("GET", "/v1/nodes")) as NodeView[];
          return show(ctx, o.output, ns, () => nodeRows(ns));
        }
        case "ipcache": {
          const es = (await c.request("GET", "/v1/ipcache")) as Row[];
          return show(ctx, o.output, es, () => [
            ["PREFIX", "IDENTITY", "SOURCE"],
            ...es.map((e) => [String(e["prefix"]), String(e["identity"]), String(e["source"])]),
          ]);
        }
        default: {
          const s = (await c.request("GET", "/v1/status")) as Row;
          return show(ctx, o.output, s, () => statusRows(s));
        }
      }
    });
}

/** `get status` as name/value lines; the last kernel apply in words; one line per controller. */
export function statusRows(s: Row): string[][] {
  return Object.entries(s).flatMap(([k, v]) =>
    k === "controllers" && Array.isArray(v)
      ? v.map(controllerRow)
      : k === "cluster"
        ? clusterRows(v)
        : k === "encryption" && typeof v === "object" && v !== null
          ? encryptionSummaryRows(v as EncryptionStatus)
          : k === "ipcDropped"
            ? ipcDroppedRows(v)
            : [[k, k === "lastApply" ? applyText(v) : valueText(v)]],
  );
}

/** `dropped from proxy   none` or `3 (address 2, l7 event 1)`: malformed IPC (agent/ipc-drops.ts). */
function ipcDroppedRows(v: unknown): string[][] {
  const byProcess = (typeof v === "object" && v !== null ? v : {}) as Row;
  return Object.entries(byProcess).map(([process, counts]) => {
    const c = Object.entries((typeof counts === "object" && counts !== null ? counts : {}) as Row);
    const total = c.reduce((n, [, x]) => n + Number(x), 0);
    const each = c.map(([reason, x]) => `${reason} ${String(x)}`).join(", ");
    return [`dropped from ${process}`, total === 0 ? "none" : `${total} (${each})`];
  });
}

/** Cluster mode: `node <name>   realized revision 41` per live node (cluster/realized.ts), or why not known. */
function clusterRows(v: unknown): string[][] {
  const c = (typeof v === "object" && v !== null ? v : {}) as Row;
  if (typeof c["error"] === "string") return [["cluster", `unknown: ${c["error"]}`]];
  const nodes = Array.isArray(c["nodes"]) ? (c["nodes"] as Row[]) : [];
  const store = (typeof c["store"] === "object" && c["store"] !== null ? c["store"] : {}) as Row;
  const lease = (typeof c["lease"] === "object" && c["lease"] !== null ? c["lease"] : {}) as Row;
  const session: string[][] =
    typeof c["mode"] === "string"
      ? [
          [
            "cluster",
            `node ${String(c["node"])}, ${String(c["nodesAlive"])} node(s) alive, tunnel ${String(c["tunnel"])}`,
          ],
          [
            "cluster store",
            store["connected"] === true
              ? "connected"
              : `not connected${store["lastError"] ? `: ${String(store["lastError"])}` : ""}`,
          ],
          [
            "cluster lease",
            `${String(lease["state"])} (ttl ${String(lease["ttlSeconds"])} s, renewals ${String(lease["renewals"])})`,
          ],
        ]
      : [];
  return [
    ...session,
    ...nodes.map((n) => [
      `node ${String(n["node"])}${n["node"] === c["node"] ? " (this node)" : ""}`,
      `realized revision ${String(n["realizedRevision"])}${n["lastError"] ? `; last error: ${String(n["lastError"])}` : ""}`,
    ]),
  ];
}

/** `controller <name>   desired 4, realized 4` and the last error, if any, with its time. */
function controllerRow(v: unknown): string[] {
  const c = (typeof v === "object" && v !== null ? v : {}) as Row;
  const e = (typeof c["lastError"] === "object" && c["lastError"] !== null ? c["lastError"] : undefined) as
    Row | undefined;
  const lag = Number(c["desired"]) > Number(c["realized"]) ? " (kernel behind)" : "";
  const err = e ? `; last error at ${String(e["at"])}: ${String(e["message"])}` : "";
  return [
    `controller ${String(c["name"])}`,
    `desired ${String(c["desired"])}, realized ${String(c["realized"])}${lag}${err}`,
  ];
}

function applyText(v: unknown): string {
  const a = (typeof v === "object" && v !== null ? v : {}) as Row;
  if (typeof a["at"] !== "string" || a["at"] === "") return "none yet";
  return `${String(a["ops"])} kernel changes in ${String(a["ms"])} ms, at ${a["at"]}`;
}

function valueText(v: unknown): string {
  if (typeof v !== "object" || v === null) return String(v);
  if (Array.isArray(v)) return v.map(valueText).join(", ");
  return Object.entries(v)
    .map(([k, x]) => `${k}=${valueText(x)}`)
    .join(" ");
}
