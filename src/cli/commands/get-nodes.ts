/** `membrane get nodes` as a table (cluster mode). */
import type { NodeView } from "../../cluster/routes.js";

export function nodeRows(ns: readonly NodeView[]): string[][] {
  return [
    ["NAME", "ALIVE", "ADDRESSES", "POD CIDRS", "ROUTING", "LABELS"],
    ...ns.map((n) => [
      n.self ? `${n.name} (this node)` : n.name,
      n.alive ? "yes" : "no",
      [n.addresses.ipv4, n.addresses.ipv6].filter((a) => a !== undefined).join(",") || "-",
      n.podCidrs.join(",") || "-",
      n.routing ?? "-",
      Object.entries(n.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(",") || "-",
    ]),
  ];
}
