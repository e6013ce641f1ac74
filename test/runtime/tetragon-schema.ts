/**
 * Our declaration of Tetragon's event contract (src/runtime/proto/events.proto, its committed
 * descriptor set), for reading our export as Tetragon's consumers do: @bufbuild/protobuf's JSON
 * reader with unknown fields refused.
 */
import { createFileRegistry, fromBinary, fromJsonString, toJson, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { EVENTS_DESCRIPTOR_SET_B64 } from "../../src/runtime/proto/events-descriptor.js";

let cached: DescMessage | undefined;

export function getEventsResponse(): DescMessage {
  if (cached) return cached;
  const set = fromBinary(FileDescriptorSetSchema, Buffer.from(EVENTS_DESCRIPTOR_SET_B64, "base64"));
  const d = createFileRegistry(set).getMessage("tetragon.GetEventsResponse");
  if (!d) throw new Error("tetragon.GetEventsResponse is not in the descriptor set");
  cached = d;
  return d;
}

/** Parses one exported line strictly; returns the canonical JSON of it (proto field names). */
export function parseStrict(line: string): Record<string, unknown> {
  const d = getEventsResponse();
  const m = fromJsonString(d, line, { ignoreUnknownFields: false });
  return toJson(d, m, { useProtoFieldName: true }) as Record<string, unknown>;
}
