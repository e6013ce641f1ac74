/**
 * TracingPolicy parse fixtures, written for Membrane: one small policy per construct that Tetragon's
 * published example policies use (syscall kprobes, kernel functions with and without a translation,
 * raw and plain tracepoints, return probes, lists, loaders, LSM hooks, each selector kind and action),
 * with what Membrane does with it: loads, or the named error at the field it cannot serve
 * ([code, path of the first problem]).
 */
import type { ErrorCode } from "../../../src/errors.js";

export interface Fixture {
  readonly name: string;
  readonly yaml: string;
  readonly want: "loads" | readonly [ErrorCode, string];
}

const doc = (name: string, spec: string): string =>
  `apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec}`;

const U = "TRACING_POLICY_UNSUPPORTED" as const;

/** A syscall kprobe with one string argument and the given selector lines (indented under `selectors:`). */
const sysOpen = (selector: string): string => `  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - {index: 1, type: string}
    selectors:
${selector}`;

export const FIXTURES: readonly Fixture[] = [
  {
    name: "syscall kprobe, Equal on a path (link of a sensitive file)",
    yaml: doc(
      "fx-linkat",
      `  kprobes:
  - call: sys_linkat
    syscall: true
    args:
    - {index: 1, type: string}
    - {index: 3, type: string}
    selectors:
    - matchArgs:
      - {index: 1, operator: Equal, values: [/etc/hostname]}
`,
    ),
    want: "loads",
  },
  {
    name: "syscall kprobe, Equal on a symlink target",
    yaml: doc(
      "fx-symlinkat",
      `  kprobes:
  - call: sys_symlinkat
    syscall: true
    args:
    - {index: 0, type: string}
    - {index: 2, type: string}
    selectors:
    - matchArgs:
      - {index: 0, operator: Equal, values: [/etc/hostname]}
`,
    ),
    want: "loads",
  },
  {
    name: "a syscall kprobe without selectors: mount, two string arguments",
    yaml: doc(
      "fx-mount",
      `  kprobes:
  - {call: sys_mount, syscall: true, args: [{index: 0, type: string}, {index: 1, type: string}]}
`,
    ),
    want: "loads",
  },
  {
    name: "a syscall kprobe without selectors: ptrace, an int argument",
    yaml: doc(
      "fx-ptrace",
      `  kprobes:
  - {call: sys_ptrace, syscall: true, args: [{index: 2, type: int}]}
`,
    ),
    want: "loads",
  },
  {
    name: "a syscall kprobe without selectors: setuid",
    yaml: doc(
      "fx-setuid",
      `  kprobes:
  - {call: sys_setuid, syscall: true, args: [{index: 0, type: int}]}
`,
    ),
    want: "loads",
  },
  {
    name: "a plain tracepoint with a syscall64 argument",
    yaml: doc(
      "fx-raw-syscalls",
      `  tracepoints:
  - subsystem: raw_syscalls
    event: sys_enter
    args: [{index: 4, type: syscall64}]
`,
    ),
    want: "loads",
  },
  {
    name: "a raw tracepoint",
    yaml: doc(
      "fx-rawtp",
      `  tracepoints:
  - {subsystem: sched, event: sched_process_exec, raw: true, args: [{index: 0, type: nop}]}
`,
    ),
    want: [U, "spec.tracepoints[0].raw"],
  },
  {
    name: "a kernel function with no tracepoint equivalent",
    yaml: doc(
      "fx-commit-creds",
      `  kprobes:
  - {call: commit_creds, syscall: false, args: [{index: 0, type: cred}]}
`,
    ),
    want: [U, "spec.kprobes[0].call"],
  },
  {
    name: "the second kprobe is the unmapped one (tcp_connect maps, tcp_close does not)",
    yaml: doc(
      "fx-tcp",
      `  kprobes:
  - {call: tcp_connect, syscall: false, args: [{index: 0, type: sock}]}
  - {call: tcp_close, syscall: false, args: [{index: 0, type: sock}]}
`,
    ),
    want: [U, "spec.kprobes[1].call"],
  },
  {
    name: "a return probe",
    yaml: doc(
      "fx-return",
      `  kprobes:
  - call: sys_openat
    syscall: true
    return: true
    args: [{index: 1, type: string}]
    returnArg: {index: 0, type: int}
`,
    ),
    want: [U, "spec.kprobes[0].return"],
  },
  {
    name: "a returnArg without return",
    yaml: doc(
      "fx-return-arg",
      `  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    returnArg: {index: 0, type: int}
`,
    ),
    want: [U, "spec.kprobes[0].returnArg"],
  },
  {
    name: "lists of calls",
    yaml: doc(
      "fx-lists",
      `  lists:
  - {name: some-calls, type: syscalls, values: [sys_dup, sys_dup2]}
  kprobes:
  - {call: list:some-calls}
`,
    ),
    want: [U, "spec.lists"],
  },
  {
    name: "the loader sensor",
    yaml: doc(
      "fx-loader",
      `  loader: true
`,
    ),
    want: [U, "spec.loader"],
  },
  {
    name: "LSM hooks",
    yaml: doc(
      "fx-lsm",
      `  lsmhooks:
  - hook: file_open
    args: [{index: 0, type: file}]
`,
    ),
    want: [U, "spec.lsmhooks"],
  },
  {
    name: "matchNamespaces on the pid and mount namespaces",
    yaml: doc(
      "fx-ns",
      sysOpen(`    - matchNamespaces:
      - {namespace: Pid, operator: In, values: ["4026531836"]}
`),
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchNamespaces[0].namespace"],
  },
  {
    name: "matchParentBinaries and matchPIDs followForks on a syscall hook (the syscall guard's)",
    yaml: doc(
      "fx-parents",
      sysOpen(`    - matchParentBinaries: [{operator: In, values: [/usr/sbin/sshd]}]
      matchPIDs: [{operator: NotIn, followForks: true, values: [1]}]
`),
    ),
    want: "loads",
  },
  {
    name: "matchParentBinaries on a hook the syscall guard does not serve (cap_capable)",
    yaml: doc(
      "fx-parents-cap",
      `  kprobes:
  - call: cap_capable
    args: [{index: 2, type: int}]
    selectors:
    - matchParentBinaries: [{operator: In, values: [/usr/bin/sudo]}]
`,
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchParentBinaries"],
  },
  {
    name: "followForks on a file hook whose Override the fanotify responder serves",
    yaml: doc(
      "fx-follow-override",
      `  kprobes:
  - call: security_file_open
    args: [{index: 0, type: file}]
    selectors:
    - matchPIDs: [{operator: In, followForks: true, values: [4242]}]
      matchArgs: [{index: 0, operator: Equal, values: [/etc/hostname]}]
      matchActions: [{action: Post}]
    - matchArgs: [{index: 0, operator: Equal, values: [/etc/shadow]}]
      matchActions: [{action: Override, argError: -1}]
`,
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchPIDs"],
  },
  {
    name: "matchPIDs in the process's own pid namespace",
    yaml: doc(
      "fx-nspid",
      sysOpen(`    - matchPIDs:
      - {operator: NotIn, followForks: true, isNamespacePID: true, values: [1]}
`),
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchPIDs[0].isNamespacePID"],
  },
  {
    name: "matchCapabilities in the user namespace",
    yaml: doc(
      "fx-nscap",
      sysOpen(`    - matchCapabilities:
      - {type: Effective, operator: In, isNamespaceCapability: true, values: [CAP_CHOWN]}
`),
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchCapabilities[0].isNamespaceCapability"],
  },
  {
    name: "matchCapabilityChanges",
    yaml: doc(
      "fx-capchanges",
      sysOpen(`    - matchCapabilityChanges:
      - {type: Effective, operator: In, values: [CAP_SYS_ADMIN]}
`),
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchCapabilityChanges"],
  },
  {
    name: "a GetUrl action",
    yaml: doc(
      "fx-geturl",
      sysOpen(`    - matchArgs:
      - {index: 1, operator: Equal, values: [/etc/hostname]}
      matchActions:
      - {action: GetUrl, argUrl: "http://127.0.0.1/"}
`),
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchActions[0].action"],
  },
  {
    name: "a DnsLookup action",
    yaml: doc(
      "fx-dns",
      sysOpen(`    - matchArgs:
      - {index: 1, operator: Equal, values: [/etc/hostname]}
      matchActions:
      - {action: DnsLookup, argFqdn: example.invalid}
`),
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchActions[0].action"],
  },
  {
    name: "Override on a syscall with no path to override it",
    yaml: doc(
      "fx-override-link",
      `  kprobes:
  - call: sys_linkat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs:
      - {index: 1, operator: Equal, values: [/etc/hostname]}
      matchActions:
      - {action: Override, argError: -1}
`,
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchActions[0].action"],
  },
  {
    name: "a CIDR operator on tcp_connect without a podSelector (no cgroup to attach to)",
    yaml: doc(
      "fx-notdaddr",
      `  kprobes:
  - call: tcp_connect
    syscall: false
    args: [{index: 0, type: sock}]
    selectors:
    - matchArgs:
      - {index: 0, operator: NotDAddr, values: [127.0.0.0/8]}
      matchActions:
      - {action: Sigkill}
`,
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchArgs[0].operator"],
  },
  {
    name: "uprobe on two functions of /bin/bash (readline, main)",
    yaml: doc(
      "fx-uprobe-bash",
      `  uprobes:
  - path: /bin/bash
    symbols: [readline, main]
`,
    ),
    want: "loads",
  },
  {
    name: "uprobe on a libc function, only for one calling binary",
    yaml: doc(
      "fx-uprobe-malloc",
      `  uprobes:
  - path: /lib/x86_64-linux-gnu/libc.so.6
    symbols: [malloc]
    args: [{index: 0, type: size_t}]
    selectors:
    - matchBinaries:
      - {operator: In, values: [/usr/bin/bash]}
`,
    ),
    want: "loads",
  },
  {
    name: "uprobe with matchPIDs followForks (the syscall guard's only)",
    yaml: doc(
      "fx-uprobe-pid",
      `  uprobes:
  - path: /bin/bash
    symbols: [readline]
    selectors:
    - matchPIDs:
      - {operator: In, followForks: true, values: [4242]}
`,
    ),
    want: [U, "spec.uprobes[0].selectors[0].matchPIDs"],
  },
  {
    name: "uprobe by offset instead of symbol",
    yaml: doc(
      "fx-uprobe-offset",
      `  uprobes:
  - path: /bin/bash
    offsets: [4096]
`,
    ),
    want: [U, "spec.uprobes[0].offsets"],
  },
  {
    name: "uprobe return probe (uretprobe) with a returned string",
    yaml: doc(
      "fx-uprobe-return",
      `  uprobes:
  - path: /bin/bash
    symbols: [readline]
    return: true
    returnArg: {index: 0, type: string}
`,
    ),
    want: [U, "spec.uprobes[0].returnArg"],
  },
  {
    name: "FollowFD / UnfollowFD (removed from Tetragon)",
    yaml: doc(
      "fx-followfd",
      `  kprobes:
  - call: fd_install
    syscall: false
    args: [{index: 0, type: int}, {index: 1, type: file}]
    selectors:
    - matchArgs:
      - {index: 1, operator: Prefix, values: [/etc/passwd]}
      matchActions:
      - {action: FollowFD, argFd: 0, argName: 1}
`,
    ),
    want: [U, "spec.kprobes[0].selectors[0].matchActions[0].action"],
  },
];
