/**
 * What a TracingPolicy hook becomes on a kernel without kprobes: the
 * documented translation table. Every accepted hook is served from
 * tracepoints; anything not in these tables is refused with a named error.
 *
 * | policy hook                            | served from                                   | argument                          |
 * |----------------------------------------|-----------------------------------------------|-----------------------------------|
 * | kprobe `sys_X`, `syscall: true`         | syscalls:sys_enter_X (syscalls.ts)            | arg i = i-th syscall argument      |
 * | kprobe security_file_permission        | syscalls:sys_enter_open/openat/openat2        | arg 0 (file) = the path opened     |
 * | kprobe security_file_open              | syscalls:sys_enter_open/openat/openat2        | arg 0 (file) = the path opened     |
 * | kprobe fd_install                      | syscalls:sys_enter_open/openat/openat2        | arg 1 (file) = the path opened     |
 * |   Override on the three file hooks     | fanotify FAN_OPEN_PERM (+ FAN_ACCESS_PERM for security_file_permission), src/runtime/file/ | the file opened (its path, or the same inode) |
 * | kprobe security_bprm_check             | syscalls:sys_enter_execve/execveat            | arg 0 (linux_binprm) = the path    |
 * | kprobe tcp_connect (node-wide)         | sock:inet_sock_set_state, TCP, -> SYN_SENT    | arg 0 (sock): DPort/SPort          |
 * | kprobe tcp_connect (podSelector)       | cgroup connect4/connect6 of the endpoints, TCP | arg 0 (sock): DAddr/DPort/Family   |
 * | kprobe security_socket_connect (podSelector only) | cgroup connect4/connect6 of the endpoints | arg 1 (sockaddr): SAddr/SPort/Family |
 * | kprobe cap_capable                     | capability:cap_capable                        | arg 2 = the capability number      |
 * | tracepoint syscalls/sys_enter_X        | itself                                        | index 5+i = i-th syscall argument  |
 * | tracepoint sched/sched_process_exec    | itself                                        | 4 filename, 5 pid, 6 old_pid       |
 * | tracepoint capability/cap_capable      | itself                                        | 7 cap, 8 ret                       |
 * | tracepoint sock/inet_sock_set_state    | itself                                        | 5 oldstate, 6 newstate, 7 sport, 8 dport, 9 family, 10 protocol |
 * | tracepoint raw_syscalls/sys_enter      | itself                                        | 4 id                               |
 *
 * What changes for the user: file hooks see the path as the process passed
 * it to open (relative paths, symlinks and `/proc/self/fd` tricks are not
 * resolved), at open time only (an fd opened before the policy loaded is not
 * seen again); exec hooks see the path given to execve, before the new
 * program runs. Tracepoint indexes count the 4 common fields, as Tetragon's do.
 * Override on a file hook is the exception: the fanotify responder sees the
 * file itself (a hard link, bind mount or relative path to a denied file is
 * denied), at open, and at each read for security_file_permission.
 *
 * Connect hooks on endpoints (a policy with a podSelector, or namespaced) are
 * served by cgroup connect4/connect6 programs attached to the selected
 * endpoints' cgroups (runtime/enforce/connect-guard.ts): they see the
 * destination before any packet is built, and can refuse the connect()
 * (Override, argError -1: EPERM; Sigkill: refused, then the process killed).
 * They see the destination address, port and family, not the binary: only
 * matchArgs and matchActions are served there (connect.ts names the rest).
 * security_socket_connect's sockaddr is the destination, so its SAddr/SPort
 * (Tetragon's names for a sockaddr's address and port) match the destination.
 */
import type { ArgSource, AttachPoint, ConnectHook, FanotifyEvents } from "./types.js";
import { syscallArgs } from "./syscalls.js";

export interface Translation {
  readonly functionName: string;
  readonly attach: readonly AttachPoint[];
  /** The argument indexes this hook can read, and what the user may declare them as. */
  readonly argTypes: ReadonlyMap<number, ArgKind>;
  /** File hooks: Override is served by these fanotify permission events (src/runtime/file/). */
  readonly fanotify?: FanotifyEvents;
  /** A connect hook: served on endpoints by cgroup connect programs. */
  readonly connect?: ConnectHook;
}

export type ArgKind = "string" | "int" | "sock" | "sockaddr";

const STRING_TYPES = new Set(["string", "char_buf", "file", "path", "filename", "linux_binprm", "dentry"]);
const INT_TYPES = new Set([
  "auto",
  "int",
  "sint8",
  "int8",
  "uint8",
  "sint16",
  "int16",
  "uint16",
  "uint32",
  "sint32",
  "int32",
  "ulong",
  "uint64",
  "size_t",
  "long",
  "sint64",
  "int64",
  "fd",
  "capability",
  "syscall64",
  "nop",
]);

/** Whether a declared Tetragon arg type can be read from a source of this kind. */
export function typeFits(declared: string, have: ArgKind): boolean {
  if (have === "string") return STRING_TYPES.has(declared) || declared === "auto" || declared === "nop";
  if (have === "sock" || have === "sockaddr")
    return declared === have || declared === "auto" || declared === "nop";
  return INT_TYPES.has(declared);
}

function syscallAttach(name: string, indexBase: number): AttachPoint | undefined {
  const args = syscallArgs(name);
  if (!args) return undefined;
  const m = new Map<number, ArgSource>();
  args.forEach(([field, kind], i) => m.set(indexBase + i, { field, kind: kind === "s" ? "ustr" : "int" }));
  return { tracepoint: `syscalls:sys_enter_${name}`, args: m };
}

function typesOf(a: AttachPoint): Map<number, ArgKind> {
  const m = new Map<number, ArgKind>();
  for (const [i, s] of a.args) m.set(i, s.kind === "int" ? "int" : s.kind === "sock" ? "sock" : "string");
  return m;
}

/** A path argument at `index`, served from the open family of syscalls. */
function openFamily(index: number): AttachPoint[] {
  return ["open", "openat", "openat2"].map((s) => ({
    tracepoint: `syscalls:sys_enter_${s}`,
    args: new Map([[index, { field: "filename", kind: "ustr" as const }]]),
  }));
}

const KERNEL_FUNCTIONS: Record<string, () => Translation> = {
  // security_file_permission runs at every read and write: fanotify can deny at open and at read
  // (FAN_ACCESS_PERM); there is no permission event for write(2), so writes are denied at open only.
  security_file_permission: () => fileHook("security_file_permission", 0, "open+read"),
  security_file_open: () => fileHook("security_file_open", 0, "open"),
  fd_install: () => fileHook("fd_install", 1, "open"),
  security_bprm_check: () => ({
    functionName: "security_bprm_check",
    attach: ["execve", "execveat"].map((s) => ({
      tracepoint: `syscalls:sys_enter_${s}`,
      args: new Map([[0, { field: "filename", kind: "ustr" as const }]]),
    })),
    argTypes: new Map([[0, "string"]]),
  }),
  tcp_connect: () => ({
    functionName: "tcp_connect",
    attach: [
      {
        tracepoint: "sock:inet_sock_set_state",
        args: new Map([[0, { field: "dport", kind: "sock" as const }]]),
        // TCP (6) entering SYN_SENT (2): the connect() of the calling process.
        guard: "args->protocol == 6 && args->newstate == 2",
      },
    ],
    argTypes: new Map([[0, "sock"]]),
    connect: { tcpOnly: true },
  }),
  // No tracepoint serves it node-wide (connect.ts refuses it without a podSelector); index 2 is addrlen.
  security_socket_connect: () => ({
    functionName: "security_socket_connect",
    attach: [],
    argTypes: new Map([[1, "sockaddr"]]),
    connect: { tcpOnly: false },
  }),
  cap_capable: () => ({
    functionName: "cap_capable",
    attach: [
      { tracepoint: "capability:cap_capable", args: new Map([[2, { field: "cap", kind: "int" as const }]]) },
    ],
    argTypes: new Map([[2, "int"]]),
  }),
};

function fileHook(name: string, index: number, fanotify: FanotifyEvents): Translation {
  return { functionName: name, attach: openFamily(index), argTypes: new Map([[index, "string"]]), fanotify };
}

export function kernelFunctions(): string[] {
  return Object.keys(KERNEL_FUNCTIONS).sort();
}

export function translateKernelFunction(call: string): Translation | undefined {
  return Object.hasOwn(KERNEL_FUNCTIONS, call) ? KERNEL_FUNCTIONS[call]?.() : undefined;
}

/** A `syscall: true` kprobe: reported as `__x64_sys_<name>`, as Tetragon reports it on x86-64. */
export function translateSyscall(name: string): Translation | undefined {
  const a = syscallAttach(name, 0);
  return a ? { functionName: `__x64_sys_${name}`, attach: [a], argTypes: typesOf(a) } : undefined;
}

const TRACEPOINTS: Record<string, () => AttachPoint> = {
  "sched:sched_process_exec": () => ({
    tracepoint: "sched:sched_process_exec",
    args: new Map<number, ArgSource>([
      [4, { field: "filename", kind: "kstr" }],
      [5, { field: "pid", kind: "int" }],
      [6, { field: "old_pid", kind: "int" }],
    ]),
  }),
  "capability:cap_capable": () => ({
    tracepoint: "capability:cap_capable",
    args: new Map<number, ArgSource>([
      [7, { field: "cap", kind: "int" }],
      [8, { field: "ret", kind: "int" }],
    ]),
  }),
  "sock:inet_sock_set_state": () => ({
    tracepoint: "sock:inet_sock_set_state",
    args: new Map<number, ArgSource>(
      ["oldstate", "newstate", "sport", "dport", "family", "protocol"].map((f, i) => [
        5 + i,
        { field: f, kind: "int" },
      ]),
    ),
  }),
  "raw_syscalls:sys_enter": () => ({
    tracepoint: "raw_syscalls:sys_enter",
    args: new Map<number, ArgSource>([[4, { field: "id", kind: "int" }]]),
  }),
};

export function translateTracepoint(subsystem: string, event: string): Translation | undefined {
  const key = `${subsystem}:${event}`;
  let a: AttachPoint | undefined;
  if (subsystem === "syscalls" && event.startsWith("sys_enter_")) {
    a = syscallAttach(event.slice("sys_enter_".length), 5);
    if (a) (a.args as Map<number, ArgSource>).set(4, { field: "__syscall_nr", kind: "int" });
  } else if (Object.hasOwn(TRACEPOINTS, key)) a = TRACEPOINTS[key]?.();
  return a ? { functionName: key, attach: [a], argTypes: typesOf(a) } : undefined;
}

export function knownTracepoints(): string[] {
  return [...Object.keys(TRACEPOINTS), "syscalls:sys_enter_<syscall>"].sort();
}
