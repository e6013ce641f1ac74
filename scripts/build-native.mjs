#!/usr/bin/env node
// Builds the native parts with Debian's gcc (scripts/install-system-deps.sh): the membrane-cni shim
// (native/membrane-cni-shim.c -> dist/bin/membrane-cni; it forwards to the agent and falls back to
// bin/membrane-cni.js, run by the node that runs this build: its path is compiled in) and the agent's
// namespace helper (native/membrane-netns.c -> dist/bin/membrane-netns, src/datapath/netns-native.ts).
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cc = process.env["CC"] ?? "gcc";
mkdirSync(join(root, "dist", "bin"), { recursive: true });

/** Compiles native/<src> into dist/bin/<name> (atomic: a caller meanwhile runs the old or the new one). */
function build(name, src, what) {
  const out = join(root, "dist", "bin", name);
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
    join(root, "native", src),
  ];
  const r = spawnSync(cc, args, { stdio: "inherit" });
  if (r.error || r.status !== 0) {
    console.error(
      `Cannot build ${what}: ${cc} ${r.error ? r.error.message : `exited ${r.status}`} ` +
        "(install gcc: scripts/install-system-deps.sh)",
    );
    process.exit(1);
  }
  renameSync(`${out}.tmp`, out);
}

// The CNI shim (bin/membrane-cni.js works without it, slower).
build("membrane-cni", "membrane-cni-shim.c", "the membrane-cni shim");
// The agent's namespace helper (src/datapath/netns-native.ts; the shell path works without it, slower).
build("membrane-netns", "membrane-netns.c", "the membrane-netns helper");
