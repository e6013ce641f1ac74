/**
 * datapath: endpoints as network namespaces, and the nftables compiler + reconciler.
 *
 *   policy engine ──DatapathState (types.ts)──> Reconciler.apply()
 *                                                 compile.ts   state -> CompiledTable (maps + chains)
 *                                                 readback.ts  nft -j list table -> ActualTable
 *                                                 plan.ts      diff -> one atomic `nft -f -` transaction
 *   agent ──createNode/createEndpoint (endpoint.ts)──> ip netns, veth, addresses, routes, sysctls
 *   kernel ──NFLOG `mbr:d:e<id>:<dir>:<reason>` (compile.ts)──> observe
 *
 * Only this room runs `ip` and `nft` (exec.ts).
 */
export * from "./types.js";
export {
  compile,
  logPrefix,
  parseLogPrefix,
  type CompileOptions,
  type Direction,
  type DropReason,
} from "./compile.js";
export { Reconciler, type ApplyResult, type ReconcilerParams } from "./reconcile.js";
export { renderTable, type CompiledTable } from "./model.js";
export { createNode, deleteNode, createEndpoint, deleteEndpoint, exec, HOST_LINK_LOCAL } from "./endpoint.js";
export type { NodeNetns, NamedNodeNetns, NodeParams, EndpointNetns, EndpointParams } from "./endpoint.js";
export { cleanupPrefix, createNetns, deleteNetns, listNetns } from "./netns.js";
