/** Our workload.proto (src/spiffe/proto) compiled by protoc now (the tetragon-schema.ts pattern). */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

export const PROTO_DIR = fileURLToPath(new URL("../../../src/spiffe/proto", import.meta.url));

/** protoc's FileDescriptorSet of workload.proto (with its imports). */
export function protocDescriptorSet(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "sp-proto-"));
  try {
    const out = join(dir, "workload.pb");
    execFileSync("protoc", ["--include_imports", `--descriptor_set_out=${out}`, "-I", PROTO_DIR, "-I", "/usr/include", "workload.proto"]); // prettier-ignore
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function officialSchema(): { message(name: string): DescMessage } {
  const reg = createFileRegistry(fromBinary(FileDescriptorSetSchema, protocDescriptorSet()));
  return {
    message(name) {
      const m = reg.getMessage(name);
      if (!m) throw new Error(`${name} not in workload.proto`);
      return m;
    },
  };
}
