#!/usr/bin/env node
// Builds the native programs with Debian's gcc (scripts/install-system-deps.sh) into dist/bin/:
// - membrane-cni (native/membrane-cni-shim.c): forwards to the agent and falls back to
//   bin/membrane-cni.js, run by the node that runs this build (its path is compiled in);
// - membrane-fanotify (native/membrane-fanotify.c): the file-access responder of runtime
//   enforcement (src/runtime/file/); without it, file-hook Override policies fail to load;
// - membrane-connect-guard (native/membrane-connect-guard.c): the loader of the runtime enforcer's
//   cgroup connect4/connect6 programs (src/runtime/enforce/connect-guard.ts);
// - membrane-exec-events (native/membrane-exec-events.c): the loader of the native process event
//   source's raw tracepoint programs (src/runtime/source/native.ts); without it, bpftrace is used;
// - membrane-syscall-guard (native/membrane-syscall-guard.c): the loader of the runtime enforcer's
//   Sigkill/Signal programs on syscall hooks (src/runtime/enforce/syscall-guard.ts); without it, bpftrace;
// - membrane-netns (native/membrane-netns.c): the agent's namespace helper (src/datapath/netns-native.ts),
//   which creates endpoint namespaces and links without a process per step;
// - membrane-nfnl (native/membrane-nfnl.c): the set-element writer (src/datapath/nfnl/setelem.ts),
//   ready at once when the agent (re)starts (the Node writer, child.js, is the fallback);
// - membrane-sockmark.node (native/membrane-sockmark.c): a Node-API addon, the mTLS node tunnel's
//   broker makes sockets with SO_MARK = the source identity with it (src/encryption/mtls/broker.ts);
//   headers from Debian's nodejs (/usr/include/node);
// - membrane-nfnl-sock.node (native/membrane-nfnl-sock.c): a Node-API addon, the agent's own nfnetlink
//   socket in a node namespace (src/datapath/nfnl/socket.ts): a batch written and answered in one call;
// - membrane-proxy-io.node (native/membrane-proxy-io.c): a Node-API addon, the HTTP/1.1 proxy's socket
//   reads and writes without Node's streams (src/proxy/http/native-io.ts); without it, net.Socket;
// - membrane-dns-io.node (native/membrane-dns-io.c): a Node-API addon, the DNS proxy's UDP sockets
//   read with recvmmsg and written with sendmmsg (src/proxy/dns/native-io.ts); without it, dgram.
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cc = process.env["CC"] ?? "gcc";
const flags = [
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
const programs = [
  {
    name: "membrane-cni",
    src: "membrane-cni-shim.c",
    extra: [`-DMEMBRANE_NODE=${JSON.stringify(process.execPath)}`],
    hint: "bin/membrane-cni.js works without it, slower",
  },
  {
    name: "membrane-netns",
    src: "membrane-netns.c",
    extra: [],
    hint: "the agent falls back to ip/nsenter without it, slower",
  },
  {
    name: "membrane-nfnl",
    src: "membrane-nfnl.c",
    extra: [],
    hint: "the agent falls back to a Node writer without it, slower to start",
  },
  {
    name: "membrane-connect-guard",
    src: "membrane-connect-guard.c",
    extra: [],
    hint: "TracingPolicies on connect hooks need it; linux/bpf.h comes with linux-libc-dev",
  },
  {
    name: "membrane-exec-events",
    src: "membrane-exec-events.c",
    extra: [],
    hint: "runtime events fall back to bpftrace without it (slower: ~0.8 ms CPU per exec)",
  },
  {
    name: "membrane-syscall-guard",
    src: "membrane-syscall-guard.c",
    extra: [],
    hint: "Sigkill/Signal on syscall hooks fall back to bpftrace without it",
  },
  {
    name: "membrane-fanotify",
    src: "membrane-fanotify.c",
    extra: [],
    hint: "TracingPolicies with Override on file hooks need it",
  },
  {
    name: "membrane-sockmark.node",
    src: "membrane-sockmark.c",
    // A shared object loaded by Node (no -pie); its napi_* symbols resolve against the node binary.
    shared: true,
    extra: ["-shared", "-fPIC", `-I${join(dirname(dirname(process.execPath)), "include", "node")}`],
    hint: "--encryption mtls-tunnel needs it; the headers come with Debian's nodejs",
  },
  {
    name: "membrane-nfnl-sock.node",
    src: "membrane-nfnl-sock.c",
    shared: true,
    extra: [
      "-shared",
      "-fPIC",
      "-pthread",
      `-I${join(dirname(dirname(process.execPath)), "include", "node")}`,
    ],
    hint: "the LB table's element changes go through the membrane-nfnl writer process without it (two wake-ups per change)",
  },
  {
    name: "membrane-proxy-io.node",
    src: "membrane-proxy-io.c",
    shared: true,
    extra: ["-shared", "-fPIC", `-I${join(dirname(dirname(process.execPath)), "include", "node")}`],
    hint: "the HTTP proxy then moves its bytes through Node's streams (slower per request)",
  },
  {
    name: "membrane-dns-io.node",
    src: "membrane-dns-io.c",
    shared: true,
    extra: ["-shared", "-fPIC", `-I${join(dirname(dirname(process.execPath)), "include", "node")}`],
    hint: "the DNS proxy then uses Node's dgram sockets (a system call per datagram)",
  },
];
for (const p of programs) {
  const out = join(root, "dist", "bin", p.name);
  mkdirSync(dirname(out), { recursive: true });
  const f = p.shared ? flags.filter((x) => x !== "-pie" && x !== "-fPIE") : flags;
  const r = spawnSync(cc, [...f, ...p.extra, "-o", `${out}.tmp`, join(root, "native", p.src)], {
    stdio: "inherit",
  });
  if (r.error || r.status !== 0) {
    console.error(
      `Cannot build ${p.name}: ${cc} ${r.error ? r.error.message : `exited ${r.status}`} ` +
        `(install gcc: scripts/install-system-deps.sh; ${p.hint})`,
    );
    process.exit(1);
  }
  renameSync(`${out}.tmp`, out); // atomic: a runtime calling the plugin meanwhile runs the old or the new one
}
