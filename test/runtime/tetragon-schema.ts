/**
 * Tetragon's own schema, for reading our export as its consumers do: a
 * descriptor set built with protoc from the vendored protos (upstream/), and
 * @bufbuild/protobuf's JSON reader with unknown fields refused.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary, fromJsonString, toJson, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

/** test/runtime/upstream, from the compiled test's place (dist/test/runtime). */
export const UPSTREAM = fileURLToPath(new URL("../../../test/runtime/upstream", import.meta.url));

let cached: DescMessage | undefined;

export function getEventsResponse(): DescMessage {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), "my7-proto-"));
  try {
    const out = join(dir, "tetragon.pb");
    execFileSync("protoc", [
      "--include_imports",
      `--descriptor_set_out=${out}`,
      "-I",
      UPSTREAM,
      "-I",
      "/usr/include",
      "tetragon/events.proto",
    ]);
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(out));
    const d = createFileRegistry(set).getMessage("tetragon.GetEventsResponse");
    if (!d) throw new Error("tetragon.GetEventsResponse is not in the descriptor set");
    cached = d;
    return d;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parses one exported line strictly; returns Tetragon's canonical JSON of it (proto field names). */
export function parseStrict(line: string): Record<string, unknown> {
  const d = getEventsResponse();
  const m = fromJsonString(d, line, { ignoreUnknownFields: false });
  return toJson(d, m, { useProtoFieldName: true }) as Record<string, unknown>;
}
