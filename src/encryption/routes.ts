/**
 * Encryption in the agent's API:
 *
 *   GET /v1/encryption   mode, strict, interface, key age, each peer's endpoint and last handshake
 *   GET /v1/status       + `encryption: {...}` (the same)
 *
 * Public keys only: the private key is never read here.
 */
import type { Route } from "../agent/api/router.js";
import { MembraneError } from "../errors.js";
import type { EncryptionAgent } from "./start.js";

export function withEncryptionRoutes(routes: Route[], wg: EncryptionAgent | undefined): Route[] {
  const withStatus = routes.map((r): Route => {
    if (!wg || r.kind === "stream" || r.method !== "GET" || r.path !== "/v1/status") return r;
    const base = r.handler;
    return {
      ...r,
      handler: async (req) => ({
        ...((await base(req)) as Record<string, unknown>),
        encryption: await wg.status(),
      }),
    };
  });
  return [
    ...withStatus,
    {
      method: "GET",
      path: "/v1/encryption",
      handler: async () => {
        if (!wg)
          throw new MembraneError(
            "ENCRYPTION_INVALID",
            "Cannot show encryption: this agent does not encrypt",
            {
              hint: "start the agent in cluster mode with --encryption wireguard or mtls-tunnel",
            },
          );
        return wg.status();
      },
    },
  ];
}
