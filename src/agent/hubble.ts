/**
 * The agent's Hubble Observer API (src/observe/hubble/server.ts) over its
 * flow ring: a unix socket beside the agent's own, and TCP with TLS when asked.
 *
 *   Agent.observer.ring --HubbleServer--> unix:<dir of --socket>/hubble.sock (0660) [+ --hubble-listen with TLS]
 */
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { HubbleServer, type HubbleTls } from "../observe/hubble/server.js";
import type { NodeRecordV1 } from "../cluster/keys.js";
import type { Agent } from "./agent.js";

export interface HubbleOptions {
  /** Unix socket; default `hubble.sock` beside the agent's API socket. */
  readonly socketPath?: string;
  readonly listen?: { readonly address: string; readonly tls: HubbleTls };
  readonly version: string;
}

/** Where the Observer API's socket is when not given: beside the agent's API socket. */
export function defaultHubbleSocket(apiSocket: string): string {
  return join(dirname(apiSocket), "hubble.sock");
}

/** Checks the flags: TCP only with a certificate and key (flows name every workload and policy). */
export function hubbleListenOf(
  address: string | undefined,
  cert: string | undefined,
  key: string | undefined,
  clientCa: string | undefined,
): HubbleOptions["listen"] {
  if (address === undefined) {
    if (cert !== undefined || key !== undefined || clientCa !== undefined)
      throw new MembraneError("CLI_USAGE", "Cannot use --hubble-tls-* without --hubble-listen", {
        hint: "Give --hubble-listen HOST:PORT, or drop the TLS flags.",
      });
    return undefined;
  }
  if (cert === undefined || key === undefined)
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot serve Hubble's API on ${address} without TLS: --hubble-tls-cert and --hubble-tls-key are required`,
      { hint: "Flows name every workload and policy of the node; the unix socket needs no TLS." },
    );
  return {
    address,
    tls: { certFile: cert, keyFile: key, ...(clientCa !== undefined ? { clientCaFile: clientCa } : {}) },
  };
}

/** Starts the API when the agent records flows; undefined otherwise. */
export async function startHubble(
  agent: Agent,
  nodeName: string,
  apiSocket: string,
  o: HubbleOptions,
  log: Logger,
): Promise<HubbleServer | undefined> {
  const observer = agent.observer;
  if (observer === undefined) return undefined;
  const server = new HubbleServer({
    source: { nodeName, version: o.version, ring: observer.ring },
    socketPath: o.socketPath ?? defaultHubbleSocket(apiSocket),
    ...(o.listen !== undefined ? { listen: o.listen } : {}),
    onError: (e) => log.error({ err: e.message }, "a flow could not be encoded for Hubble's API"),
  });
  await server.start();
  log.info({ addresses: server.addresses }, "Hubble Observer API listening");
  return server;
}

/**
 * The node record with where its Observer API is served: the unix socket, and the TCP listener
 * (a wildcard host replaced by the node's own address, the one peers reach it on).
 */
export function withHubble(r: NodeRecordV1, server: HubbleServer): NodeRecordV1 {
  let socket: string | undefined;
  let address: string | undefined;
  for (const a of server.addresses) {
    if (a.startsWith("unix:")) socket ??= a.slice(5);
    else {
      const i = a.lastIndexOf(":");
      const host = a.slice(0, i);
      const wildcard = host === "0.0.0.0" || host === "[::]" || host === "::" || host === "";
      const own = r.addresses.ipv4 ?? (r.addresses.ipv6 !== undefined ? `[${r.addresses.ipv6}]` : undefined);
      address ??= wildcard && own !== undefined ? `${own}${a.slice(i)}` : a;
    }
  }
  return {
    ...r,
    hubble: { ...(socket !== undefined ? { socket } : {}), ...(address !== undefined ? { address } : {}) },
  };
}
