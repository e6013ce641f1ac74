// protoc's FileDescriptorSet (imports included) of one .proto, as base64: what the generated
// descriptor modules of Hubble's API (gen-hubble-descriptors.mjs) and the SPIFFE Workload API
// (gen-spiffe-descriptor.mjs) carry, so that nothing needs protoc at build or run time.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** `file` relative to `protoDir`; Debian's well-known types come from /usr/include. */
export function descriptorSetBase64(protoDir, file) {
  const dir = mkdtempSync(join(tmpdir(), "proto-desc-"));
  try {
    const out = join(dir, "set.pb");
    execFileSync("protoc", [
      "--include_imports",
      `--descriptor_set_out=${out}`,
      "-I",
      protoDir,
      "-I",
      "/usr/include",
      file,
    ]);
    return readFileSync(out).toString("base64");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
