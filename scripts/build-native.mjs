#!/usr/bin/env node
// Builds the native helpers with Debian's gcc (scripts/install-system-deps.sh):
// - native/membrane-cni-shim.c into dist/bin/membrane-cni. It forwards to the agent and falls back to
//   bin/membrane-cni.js, run by the node that runs this build (its path is compiled in).
// - native/membrane-connect-guard.c into dist/bin/membrane-connect-guard: the loader of the runtime
//   enforcer's cgroup connect4/connect6 programs (src/runtime/enforce/connect-guard.ts).
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cc = process.env["CC"] ?? "gcc";
const hardening = [
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
];

function build(source, name, extra, why) {
  const out = join(root, "dist", "bin", name);
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync(cc, [...hardening, ...extra, "-o", `${out}.tmp`, join(root, "native", source)], {
    stdio: "inherit",
  });
  if (r.error || r.status !== 0) {
    console.error(`Cannot build ${name}: ${cc} ${r.error ? r.error.message : `exited ${r.status}`} (${why})`);
    process.exit(1);
  }
  renameSync(`${out}.tmp`, out); // atomic: a runtime calling the binary meanwhile runs the old or the new one
}

build(
  "membrane-cni-shim.c",
  "membrane-cni",
  [`-DMEMBRANE_NODE=${JSON.stringify(process.execPath)}`],
  "install gcc: scripts/install-system-deps.sh; bin/membrane-cni.js works without it, slower",
);
build(
  "membrane-connect-guard.c",
  "membrane-connect-guard",
  [],
  "install gcc and linux-libc-dev: scripts/install-system-deps.sh; TracingPolicies on connect hooks need it",
);
