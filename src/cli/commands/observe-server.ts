/**
 * `membrane observe --server ADDR`: flows from a Hubble Observer API (an
 * agent's hubble.sock, a TCP listener with TLS, or Cilium's own Hubble)
 * instead of the agent's REST socket. Same flags, same output.
 *
 *   flags --filterFromFlags--> ObserveRequest --GetFlowsRequest--> ADDR --stream--> print
 */
import { MembraneError } from "../../errors.js";
import {
  formatCompact,
  formatTable,
  type FlowRecord,
  type ObserveRequest,
  type OutputFormat,
} from "../../observe/index.js";
import { HubbleClient, type HubbleClientTls } from "../../observe/hubble/client.js";
import { recordFromHubble } from "../../observe/hubble/json.js";
import { DEFAULT_RELAY_SOCKET } from "../../relay/relay.js";
import type { CliContext } from "../context.js";

export interface ServerFlags {
  server: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

/** The address of --server: "relay" is the relay's socket on this host (`membrane relay`'s default). */
export function serverAddress(server: string): string {
  return server === "relay" ? `unix:${DEFAULT_RELAY_SOCKET}` : server;
}

/** The TLS files of --tls-ca/--tls-cert/--tls-key/--tls-server-name, checked as a set. */
export function tlsOf(o: Omit<ServerFlags, "server">): HubbleClientTls | undefined {
  if (o.tlsCa === undefined) {
    if (o.tlsCert !== undefined || o.tlsKey !== undefined)
      throw new MembraneError("CLI_USAGE", "Cannot use --tls-cert/--tls-key without --tls-ca", {
        hint: "Give --tls-ca FILE: the CA that signed the server's certificate.",
      });
    return undefined;
  }
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined))
    throw new MembraneError(
      "CLI_USAGE",
      "Cannot use a client certificate without its key (or a key without its certificate)",
      {
        hint: "Give both --tls-cert and --tls-key, or neither.",
      },
    );
  return {
    caFile: o.tlsCa,
    ...(o.tlsCert !== undefined ? { certFile: o.tlsCert } : {}),
    ...(o.tlsKey !== undefined ? { keyFile: o.tlsKey } : {}),
    ...(o.tlsServerName !== undefined ? { serverName: o.tlsServerName } : {}),
  };
}

/** Prints the flows a Hubble server answers; with --follow, until interrupted. */
export async function observeFromServer(
  ctx: CliContext,
  o: ServerFlags,
  req: ObserveRequest,
  format: OutputFormat,
  print: { utc: boolean },
): Promise<void> {
  if (format === "table" && req.follow)
    throw new MembraneError("CLI_USAGE", "Cannot use -o table with --follow: use compact or json");
  // "relay": the relay's socket on this host (`membrane relay`'s default).
  const address = serverAddress(o.server);
  const client = new HubbleClient(address, tlsOf(o));
  const ac = new AbortController();
  const onSigint = (): void => ac.abort();
  process.once("SIGINT", onSigint);
  const table: FlowRecord[] = [];
  try {
    await client.getFlows(
      req,
      (j) => {
        if (format === "json") return ctx.out(JSON.stringify(j) + "\n");
        const ns = j["node_status"] as
          { state_change?: string; node_names?: string[]; message?: string } | undefined;
        if (ns !== undefined) return ctx.err(nodeStatusLine(ns) + "\n");
        const r = recordFromHubble(j);
        if (r === undefined) return;
        if (format === "table") table.push(r);
        else ctx.out(formatCompact(r, print) + "\n");
      },
      ac.signal,
    );
    if (format === "table" && table.length > 0) ctx.out(formatTable(table, print) + "\n");
  } finally {
    process.off("SIGINT", onSigint);
    client.close();
  }
}

/** A relay's node_status event for people: "nodes n2 are NODE_UNAVAILABLE: why". */
function nodeStatusLine(ns: { state_change?: string; node_names?: string[]; message?: string }): string {
  const state = (ns.state_change ?? "UNKNOWN_NODE_STATE").replace(/^NODE_/, "").toLowerCase();
  const names = (ns.node_names ?? []).join(", ");
  return `node ${names}: ${state}${ns.message ? ` (${ns.message})` : ""}`;
}
