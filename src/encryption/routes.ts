/**
 * Encryption in the agent's API:
 *
 *   GET /v1/encryption   mode, strict, interface, key age, each peer's endpoint and last handshake
 *                        (ipsec: and its IKE state and CHILD_SAs: SPIs, algorithm, bytes, ages)
 *   GET /v1/status       + `encryption: {...}` (the same)
 *   POST /v1/encryption/rotate-key   rotates this node's key (rotation.ts); answers when done
 *
 * Public keys only: the private key is never read here.
 */
import type { Route } from "../agent/api/router.js";
import { MembraneError } from "../errors.js";
import type { EncryptionAgent } from "./mode.js";

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
        if (!wg) throw notEncrypting();
        return wg.status();
      },
    },
    {
      method: "POST",
      path: "/v1/encryption/rotate-key",
      handler: async () => {
        if (!wg) throw notEncrypting();
        if (!wg.rotateKey)
          throw new MembraneError(
            "ENCRYPTION_INVALID",
            `Cannot rotate the node key: --encryption ${wg.mode} has no key rotation of its own`,
            {
              hint: "the mTLS tunnel renews its SVIDs at half life by itself; see `membrane encryption status`",
            },
          );
        return wg.rotateKey();
      },
    },
  ];
}

const notEncrypting = (): MembraneError =>
  new MembraneError("ENCRYPTION_INVALID", "Cannot show or change encryption: this agent does not encrypt", {
    hint: "start the agent in cluster mode with --encryption wireguard, ipsec or mtls-tunnel",
  });
