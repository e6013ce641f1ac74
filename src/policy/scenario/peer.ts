/**
 * The `from` / `to` notation of scenario queries:
 *
 *   deathstar | prod/db          an endpoint (namespace/name when names repeat)
 *   world:1.2.3.4 | cidr:1.2.3.4 an address outside the cluster
 *   host                         the node the endpoints run on
 *   remote-node:10.0.2.1         another node
 *   kube-apiserver:10.96.0.1     an API server backend
 *   fqdn:api.example.com         the first address DNS gave for that name
 */
import { parseAddr } from "../../labels/cidr.js";
import type { PeerSpec } from "./types.js";

export const PEER_SYNTAX =
  "an endpoint name, namespace/name, host, world:<ip>, cidr:<ip>, remote-node:<ip>, kube-apiserver:<ip> or fqdn:<name>";

/** Parses a peer; returns an error message (without location) when malformed. */
export function parsePeer(text: string): PeerSpec | { error: string } {
  if (text === "host") return { kind: "host" };
  const colon = text.indexOf(":");
  if (colon >= 0) {
    const kind = text.slice(0, colon);
    const rest = text.slice(colon + 1);
    switch (kind) {
      case "world":
      case "cidr":
      case "remote-node":
      case "kube-apiserver":
        if (parseAddr(rest) === undefined) return { error: `"${rest}" is not an IP address (in "${text}")` };
        return { kind, ip: rest };
      case "fqdn":
        if (!/^[a-zA-Z0-9_.-]+$/.test(rest)) return { error: `"${rest}" is not a DNS name (in "${text}")` };
        return { kind: "fqdn", name: rest };
      default:
        return { error: `unknown peer kind "${kind}:"; expected ${PEER_SYNTAX}` };
    }
  }
  const parts = text.split("/");
  if (parts.length > 2 || parts.some((p) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(p))) {
    return { error: `"${text}" is not ${PEER_SYNTAX}` };
  }
  if (parts.length === 2) return { kind: "endpoint", namespace: parts[0] ?? "", name: parts[1] ?? "" };
  return { kind: "endpoint", name: text };
}

/** Normalises a DNS name for lookups: lower case, no trailing dot. */
export function dnsKey(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

/**
 * Finds an endpoint by `name` or `namespace/name` among `endpoints`.
 * Returns an error message when it is unknown or ambiguous.
 */
export function findEndpoint<E extends { readonly name: string; readonly namespace: string }>(
  endpoints: readonly E[],
  ref: { readonly name: string; readonly namespace?: string },
): E | { error: string } {
  const hits = endpoints.filter(
    (e) => e.name === ref.name && (ref.namespace === undefined || e.namespace === ref.namespace),
  );
  const shown = ref.namespace === undefined ? ref.name : `${ref.namespace}/${ref.name}`;
  if (hits.length === 1 && hits[0] !== undefined) return hits[0];
  if (hits.length === 0) {
    const known = endpoints.map((e) => `${e.namespace}/${e.name}`).join(", ") || "none";
    return { error: `no endpoint named "${shown}" (known: ${known})` };
  }
  return {
    error: `endpoint name "${shown}" is ambiguous (in namespaces ${hits.map((h) => h.namespace).join(", ")}); write namespace/name`,
  };
}
