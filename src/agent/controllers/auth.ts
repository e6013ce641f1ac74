/**
 * Mutual authentication for the agent (src/auth/manager.ts): started with the SPIFFE provider
 * when `--spiffe` is on, on the node's namespace and table.
 *
 *   SvidProvider + AuthTable(<table>_auth) + ipcache lookup + local identities --> AuthManager
 */
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { AuthManager } from "../../auth/manager.js";
import { AuthTable } from "../../datapath/auth-table.js";
import type { SvidProvider } from "../../spiffe/provider.js";
import type { EndpointView } from "./endpoints.js";

export interface AuthDeps {
  /** The identity of an address (the agent's ipcache). */
  readonly identityOf: (ip: string) => number;
  readonly registry?: Registry | undefined;
}

export interface AuthAgentParams {
  readonly logger: Logger;
  readonly nodeNetns?: string;
  readonly table: string;
  readonly observe?: { readonly nodeName: string };
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
    ...(d.registry ? { registry: d.registry } : {}),
  });
  await auth.start();
  return auth;
}
