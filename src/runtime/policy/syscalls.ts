/**
 * The x86-64 system calls Membrane serves TracingPolicy probes for, with the
 * argument names of their `syscalls:sys_enter_*` tracepoints (as the kernel's
 * tracefs format files spell them; checked on 6.18). `s`: a user-space C
 * string (readable as a path or name), `i`: an integer, `p`: another pointer
 * (its raw value only).
 *
 * A syscall that is not listed here is refused with a named error rather than
 * attached blind: the argument layout must be known to compile selectors.
 */

export type SyscallArgKind = "s" | "i" | "p";

/** name -> [tracepoint field, kind] in argument order. */
const TABLE: Record<string, readonly (readonly [string, SyscallArgKind])[]> = {
  open: [
    ["filename", "s"],
    ["flags", "i"],
    ["mode", "i"],
  ],
  openat: [
    ["dfd", "i"],
    ["filename", "s"],
    ["flags", "i"],
    ["mode", "i"],
  ],
  openat2: [
    ["dfd", "i"],
    ["filename", "s"],
    ["how", "p"],
    ["usize", "i"],
  ],
  execve: [
    ["filename", "s"],
    ["argv", "p"],
    ["envp", "p"],
  ],
  execveat: [
    ["fd", "i"],
    ["filename", "s"],
    ["argv", "p"],
    ["envp", "p"],
    ["flags", "i"],
  ],
  setuid: [["uid", "i"]],
  setgid: [["gid", "i"]],
  setreuid: [
    ["ruid", "i"],
    ["euid", "i"],
  ],
  setresuid: [
    ["ruid", "i"],
    ["euid", "i"],
    ["suid", "i"],
  ],
  setfsuid: [["uid", "i"]],
  setregid: [
    ["rgid", "i"],
    ["egid", "i"],
  ],
  setresgid: [
    ["rgid", "i"],
    ["egid", "i"],
    ["sgid", "i"],
  ],
  setfsgid: [["gid", "i"]],
  ptrace: [
    ["request", "i"],
    ["pid", "i"],
    ["addr", "i"],
    ["data", "i"],
  ],
  mount: [
    ["dev_name", "s"],
    ["dir_name", "s"],
    ["type", "s"],
    ["flags", "i"],
    ["data", "p"],
  ],
  umount: [
    ["name", "s"],
    ["flags", "i"],
  ],
  unshare: [["unshare_flags", "i"]],
  setns: [
    ["fd", "i"],
    ["flags", "i"],
  ],
  kill: [
    ["pid", "i"],
    ["sig", "i"],
  ],
  connect: [
    ["fd", "i"],
    ["uservaddr", "p"],
    ["addrlen", "i"],
  ],
  bind: [
    ["fd", "i"],
    ["umyaddr", "p"],
    ["addrlen", "i"],
  ],
  socket: [
    ["family", "i"],
    ["type", "i"],
    ["protocol", "i"],
  ],
  chmod: [
    ["filename", "s"],
    ["mode", "i"],
  ],
  fchmodat: [
    ["dfd", "i"],
    ["filename", "s"],
    ["mode", "i"],
  ],
  chown: [
    ["filename", "s"],
    ["user", "i"],
    ["group", "i"],
  ],
  lchown: [
    ["filename", "s"],
    ["user", "i"],
    ["group", "i"],
  ],
  fchown: [
    ["fd", "i"],
    ["user", "i"],
    ["group", "i"],
  ],
  fchownat: [
    ["dfd", "i"],
    ["filename", "s"],
    ["user", "i"],
    ["group", "i"],
    ["flag", "i"],
  ],
  unlink: [["pathname", "s"]],
  unlinkat: [
    ["dfd", "i"],
    ["pathname", "s"],
    ["flag", "i"],
  ],
  rename: [
    ["oldname", "s"],
    ["newname", "s"],
  ],
  renameat2: [
    ["olddfd", "i"],
    ["oldname", "s"],
    ["newdfd", "i"],
    ["newname", "s"],
    ["flags", "i"],
  ],
  symlink: [
    ["oldname", "s"],
    ["newname", "s"],
  ],
  symlinkat: [
    ["oldname", "s"],
    ["newdfd", "i"],
    ["newname", "s"],
  ],
  link: [
    ["oldname", "s"],
    ["newname", "s"],
  ],
  linkat: [
    ["olddfd", "i"],
    ["oldname", "s"],
    ["newdfd", "i"],
    ["newname", "s"],
    ["flags", "i"],
  ],
  mkdir: [
    ["pathname", "s"],
    ["mode", "i"],
  ],
  mkdirat: [
    ["dfd", "i"],
    ["pathname", "s"],
    ["mode", "i"],
  ],
  rmdir: [["pathname", "s"]],
  truncate: [
    ["path", "s"],
    ["length", "i"],
  ],
  ftruncate: [
    ["fd", "i"],
    ["length", "i"],
  ],
  read: [
    ["fd", "i"],
    ["buf", "p"],
    ["count", "i"],
  ],
  write: [
    ["fd", "i"],
    ["buf", "p"],
    ["count", "i"],
  ],
  dup: [["fildes", "i"]],
  dup2: [
    ["oldfd", "i"],
    ["newfd", "i"],
  ],
  dup3: [
    ["oldfd", "i"],
    ["newfd", "i"],
    ["flags", "i"],
  ],
  clock_settime: [
    ["which_clock", "i"],
    ["tp", "p"],
  ],
  pivot_root: [
    ["new_root", "s"],
    ["put_old", "s"],
  ],
  chroot: [["filename", "s"]],
  bpf: [
    ["cmd", "i"],
    ["uattr", "p"],
    ["size", "i"],
  ],
  memfd_create: [
    ["uname", "s"],
    ["flags", "i"],
  ],
  sethostname: [
    ["name", "s"],
    ["len", "i"],
  ],
  reboot: [
    ["magic1", "i"],
    ["magic2", "i"],
    ["cmd", "i"],
    ["arg", "p"],
  ],
  prctl: [
    ["option", "i"],
    ["arg2", "i"],
    ["arg3", "i"],
    ["arg4", "i"],
    ["arg5", "i"],
  ],
  capset: [
    ["header", "p"],
    ["data", "p"],
  ],
  perf_event_open: [
    ["attr_uptr", "p"],
    ["pid", "i"],
    ["cpu", "i"],
    ["group_fd", "i"],
    ["flags", "i"],
  ],
};

export function syscallArgs(name: string): readonly (readonly [string, SyscallArgKind])[] | undefined {
  return Object.hasOwn(TABLE, name) ? TABLE[name] : undefined;
}

export function knownSyscalls(): string[] {
  return Object.keys(TABLE).sort();
}

/**
 * The syscall a kprobe `call` names: `sys_openat`, `__x64_sys_openat` and
 * `openat` (with `syscall: true`) all mean openat. Undefined for other spellings
 * (`__ia32_*` compat entries: this enforcer serves the 64-bit table only).
 */
export function syscallName(call: string): string | undefined {
  const m = /^(?:__x64_)?sys_([a-z0-9_]+)$/.exec(call) ?? /^([a-z0-9_]+)$/.exec(call);
  return m?.[1];
}
