/**
 * Mutual authentication (src/auth/manager.ts), never a private key in an answer:
 *   GET  /v1/auth/pairs                 authenticated pairs the kernel holds (source, destination, node, expires)
 *   POST /v1/auth/svid    {identity}    the identity's X.509-SVID: certificates (PEM), SPIFFE ID, validity
 *   POST /v1/auth/revoke  {identity}    withhold its SVID from handshakes, remove its pairs
 *   POST /v1/auth/restore {identity}    undo a revoke
 *   POST /v1/auth/rotate  {identity}    issue the identity's SVID again now (its pairs authenticate again)
 *   GET  /v1/auth/peers                 pooled connections to peer nodes' agents, and their counters
 *   POST /v1/auth/transport {mode, proof?}  channel (pooled connections, the default) | per-pair (a TLS handshake each);
 *                                       proof: once (per connection and SVID, the default) | each (every pair signed: protocol v1)
 *   POST /v1/auth/prefill {remote}      cross-node pairs authenticated ahead (true) or on their first packet only
 */
import { MembraneError } from "../../errors.js";
import type { AuthManager } from "../../auth/manager.js";
import { fields } from "./body.js";
import type { ApiRequest, Route } from "./router.js";

function identityOf(req: ApiRequest): number {
  const v = fields(req, { identity: "required" })["identity"];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 0x01ffffff)
    throw new MembraneError("API_REQUEST_INVALID", `Cannot read the request: identity must be a whole number 1..33554431, not ${JSON.stringify(v)}`); // prettier-ignore
  return v;
}

export function authRoutes(auth: () => AuthManager | undefined): Route[] {
  const a = (): AuthManager => {
    const m = auth();
    if (!m)
      throw new MembraneError(
        "AUTH_UNAVAILABLE",
        "Cannot answer: mutual authentication is off on this agent",
        {
          hint: "start the agent with --spiffe (and iptables installed for the queue rule)",
        },
      );
    return m;
  };
  return [
    { method: "GET", path: "/v1/auth/pairs", handler: async () => ({ pairs: await a().list(), revoked: a().revokedIdentities }) }, // prettier-ignore
    {
      method: "POST",
      path: "/v1/auth/svid",
      handler: (req) => {
        const id = identityOf(req);
        const s = a().svid(id);
        if (!s)
          throw new MembraneError(
            "AUTH_SVID_NOT_FOUND",
            `Cannot show the SVID of identity ${id}: this node holds none`,
            {
              hint: "SVIDs exist for identities of this node's endpoints (membrane get identities)",
            },
          );
        return s;
      },
    },
    { method: "POST", path: "/v1/auth/revoke", handler: async (req) => ({ removedPairs: await a().revoke(identityOf(req)) }) }, // prettier-ignore
    {
      method: "POST",
      path: "/v1/auth/restore",
      handler: (req) => ({ restored: a().restore(identityOf(req)) }),
    },
    {
      method: "POST",
      path: "/v1/auth/rotate",
      handler: async (req) => {
        const m = a();
        const id = identityOf(req);
        if (!m.p.provider.current(id)) throw new MembraneError("AUTH_SVID_NOT_FOUND", `Cannot rotate the SVID of identity ${id}: this node holds none`, { hint: "SVIDs exist for identities of this node's endpoints (membrane get identities)" }); // prettier-ignore
        const s = await m.p.provider.rotate(id);
        await m.maintainSoon();
        return { rotated: s.toJSON() };
      },
    },
    {
      method: "GET",
      path: "/v1/auth/peers",
      handler: () => {
        const c = a().channels;
        const pre = a().remotePrefill;
        return { transport: a().transport, proof: c?.proofOnce === false ? "each" : "once", peers: c?.view() ?? [], client: c?.stats ?? null, served: c?.served ?? null, prefill: { remote: pre.enabled, ...pre.stats } }; // prettier-ignore
      },
    },
    {
      method: "POST",
      path: "/v1/auth/transport",
      handler: (req) => {
        const b = fields(req, { mode: "required", proof: "optional" });
        const mode = b["mode"];
        const proof = b["proof"] ?? "once";
        if (mode !== "channel" && mode !== "per-pair")
          throw new MembraneError("API_REQUEST_INVALID", `Cannot read the request: mode must be "channel" or "per-pair", not ${JSON.stringify(mode)}`, { location: { path: "mode" } }); // prettier-ignore
        if (proof !== "once" && proof !== "each")
          throw new MembraneError("API_REQUEST_INVALID", `Cannot read the request: proof must be "once" or "each", not ${JSON.stringify(proof)}`, { location: { path: "proof" } }); // prettier-ignore
        a().transport = mode;
        a().channels?.setProofOnce(proof === "once");
        return { transport: mode, proof };
      },
    },
    {
      method: "POST",
      path: "/v1/auth/prefill",
      handler: (req) => {
        const remote = fields(req, { remote: "required" })["remote"];
        if (typeof remote !== "boolean")
          throw new MembraneError("API_REQUEST_INVALID", `Cannot read the request: remote must be true or false, not ${JSON.stringify(remote)}`, { location: { path: "remote" } }); // prettier-ignore
        const m = a();
        m.remotePrefill.enabled = remote;
        if (remote && m.p.prefill) m.remotePrefill.kick(m);
        return { remote, ...m.remotePrefill.stats };
      },
    },
  ];
}
