#!/usr/bin/env node
// Builds the native membrane-cni shim (native/membrane-cni-shim.c) into dist/bin/membrane-cni with
// Debian's gcc (scripts/install-system-deps.sh). It forwards to the agent and falls back to
// bin/membrane-cni.js, run by the node that runs this build (its path is compiled in).
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "bin", "membrane-cni");
mkdirSync(dirname(out), { recursive: true });
const cc = process.env["CC"] ?? "gcc";
const args = [
  "-O2",
  "-std=c11",
  "-Wall",
  "-Wextra",
  "-Werror",
  "-D_FORTIFY_SOURCE=2",
  "-fstack-protector-strong",
  "-fPIE",
  "-pie",
  "-Wl,-z,relro,-z,now",
  `-DMEMBRANE_NODE=${JSON.stringify(process.execPath)}`,
  "-o",
  `${out}.tmp`,
  join(root, "native", "membrane-cni-shim.c"),
];
const r = spawnSync(cc, args, { stdio: "inherit" });
if (r.error || r.status !== 0) {
  console.error(
    `Cannot build the membrane-cni shim: ${cc} ${r.error ? r.error.message : `exited ${r.status}`} ` +
      "(install gcc: scripts/install-system-deps.sh; bin/membrane-cni.js works without it, slower)",
  );
  process.exit(1);
}
renameSync(`${out}.tmp`, out); // atomic: a runtime calling the plugin meanwhile runs the old or the new one
