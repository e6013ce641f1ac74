/**
 * Mutual authentication for the agent (src/auth/manager.ts): started with the SPIFFE provider
 * when `--spiffe` is on, on the node's namespace and table.
 *
 *   SvidProvider + AuthTable(<table>_auth) + ipcache lookup + endpoints + applied policy --> AuthManager
 *   (cluster mode: run.ts then attaches the node registry, auth/cluster.ts)
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { AuthManager } from "../../auth/manager.js";
import { AuthTable } from "../../datapath/auth-table.js";
import type { SvidProvider } from "../../spiffe/provider.js";
import type { DatapathState } from "../../datapath/types.js";
import type { EndpointView } from "./endpoints.js";

export interface AuthDeps {
  /** The identity of an address (the agent's ipcache). */
  readonly identityOf: (ip: string) => number;
  readonly registry?: Registry | undefined;
  /** Endpoints of the other nodes (cluster mode): address and identity. */
  readonly remoteEndpoints?: () => readonly { ip: string; identity: number }[];
  /** The policy state the kernel holds (the enforcer's last applied one). */
  readonly state?: () => DatapathState | undefined;
}

export interface AuthAgentParams {
  readonly logger: Logger;
  readonly nodeNetns?: string;
  readonly table: string;
  readonly observe?: { readonly nodeName: string };
  /** Cluster mode: pairs wait for the cluster's nodes (auth/cluster.ts attaches them). */
  readonly cluster?: unknown;
  /** Authenticate local pairs before their first packet (auth/prefill.ts). */
  readonly prefill?: boolean;
  /** With prefill: cross-node pairs too (auth/prefill-remote.ts; default true). */
  readonly prefillRemote?: boolean;
}

export async function startAuth(
  p: AuthAgentParams,
  provider: SvidProvider,
  endpoints: () => readonly EndpointView[],
  d: AuthDeps,
): Promise<AuthManager> {
  const auth = new AuthManager({
    logger: p.logger,
    provider,
    table: new AuthTable(p.table, p.nodeNetns),
    ...(p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {}),
    nodeName: p.observe?.nodeName ?? "local",
    identityOf: d.identityOf,
    localIdentities: () => new Set(endpoints().map((e) => e.identity)),
    endpoints: () => [
      ...endpoints().flatMap((e) => [e.ipv4, e.ipv6].filter((ip): ip is string => ip !== undefined).map((ip) => ({ ip, identity: e.identity, netns: e.netns }))), // prettier-ignore
      ...(d.remoteEndpoints?.() ?? []).map((r) => ({ ip: r.ip, identity: r.identity })),
    ],
    state: d.state ?? (() => undefined),
    cluster: p.cluster !== undefined,
    prefill: p.prefill ?? false,
    ...(d.registry ? { registry: d.registry } : {}),
  });
  auth.remotePrefill.enabled = p.prefillRemote ?? true;
  await auth.start();
  return auth;
}
