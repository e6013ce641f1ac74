/**
 * Hubble's strict JSON reading of our flow lines: the descriptor set of
 * src/observe/hubble/proto (observer.GetFlowsResponse) and @bufbuild/protobuf's
 * JSON reader with unknown fields refused, as Go's protojson reads them.
 */
import assert from "node:assert/strict";
import { fromJsonString, toJson } from "@bufbuild/protobuf";
import { formatJson } from "../../../src/observe/printer.js";
import type { FlowRecord } from "../../../src/observe/flow.js";
import { hubbleSchema } from "../../../src/observe/hubble/schema.js";

/** Parses one line as a GetFlowsResponse, unknown fields refused; returns its canonical JSON (proto names). */
export function parseHubbleStrict(line: string): Record<string, unknown> {
  const d = hubbleSchema().GetFlowsResponse;
  const m = fromJsonString(d, line, { ignoreUnknownFields: false, registry: hubbleSchema().registry });
  return toJson(d, m, { useProtoFieldName: true, registry: hubbleSchema().registry }) as Record<
    string,
    unknown
  >;
}

/** Every record's `-o json` line parses strictly; the failures name the line. Returns how many were checked. */
export function assertHubbleStrict(records: readonly FlowRecord[], where: string): number {
  const bad: string[] = [];
  for (const r of records) {
    const line = formatJson(r);
    try {
      parseHubbleStrict(line);
    } catch (e) {
      bad.push(`${(e as Error).message}: ${line}`);
    }
  }
  assert.deepEqual(bad, [], `${where}: flow lines Hubble's strict parser refuses`);
  return records.length;
}
