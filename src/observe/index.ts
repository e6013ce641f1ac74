/**
 * observe: flows from the kernel, one filter language, a ring, printers,
 * metrics and export (issue #4, STYLE.md §11).
 *
 *   kernel (node netns): `log group N prefix "mbr:d:e12:in:r7" drop`
 *     | netlink NFLOG, read by nflog-child.js under `ip netns exec`
 *     v
 *   NflogReader --NflogEvent{prefix, packet, mark, seq}--> FlowEnricher (packet.ts + FlowLookup)
 *     | Flow (Hubble's JSON field names, flow.ts)          \-- seq gaps --> lost_events
 *     v
 *   FlowRing (bounded, seq numbers, last N / since / until / follow, LostEvent for lapped followers)
 *     |--> FlowMetrics (prom-client Registry) --serveMetrics--> GET /metrics
 *     |--> FlowExporter (JSON lines, size rotation, allow/deny filter)
 *     '--> observe API / CLI: filterFromFlags(flags) -> FlowFilterSet -> compileFilter -> printer
 *
 * Offline: parseFlowLines(file) + selectRecords(records, request) answer as the agent would.
 */
export * from "./flow.js";
export { decodePacket, type DecodedPacket } from "./packet.js";
export { NflogReader, readNflogInNetns, type NflogReaderParams, type NflogStats } from "./nflog.js";
export type { NflogEvent, NflogConfig } from "./nflog-msg.js";
export {
  FlowEnricher,
  parseFlowPrefix,
  type FlowLookup,
  type EndpointInfo,
  type RuleInfo,
} from "./enrich.js";
export {
  compileFilter,
  FLOW_FILTER_FIELDS,
  FLOW_PROTOCOLS,
  globMatch,
  type FlowFilter,
  type FlowFilterSet,
  type EventTypeFilter,
} from "./filter.js";
export { filterFromFlags, type ObserveFlags, type ObserveRequest } from "./flags.js";
export {
  FlowRing,
  type FlowRingParams,
  type ReadOptions,
  type FollowOptions,
  type RingStats,
} from "./ring.js";
export {
  formatCompact,
  formatJson,
  formatTable,
  formatRecords,
  parseOutputFormat,
  type OutputFormat,
} from "./printer.js";
export { FlowMetrics, serveMetrics, type MetricsServer } from "./metrics.js";
export {
  defaultMetricsList,
  METRIC_HANDLERS,
  parseMetricsList,
  type MetricHandlerName,
  type MetricHandlerSpec,
} from "./metrics-config.js";
export { FlowExporter, type FlowExporterParams, type ExportStats } from "./export.js";
export { parseFlowLines, selectRecords } from "./input.js";
