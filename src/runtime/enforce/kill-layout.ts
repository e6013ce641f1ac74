/**
 * The kernel struct offsets the syscall guard's programs (kill-prog.ts) read
 * at, from the running kernel's BTF (or the offsets cache,
 * ../source/btf-cache.ts). Pure: a BTF lookup in, numbers out.
 */
import type { BtfLookup } from "../source/btf.js";
import type { NamespaceType } from "../policy/types.js";

export interface KillLayout {
  /** struct pt_regs: the six syscall argument registers, in argument order (di, si, dx, r10, r8, r9). */
  readonly regs: readonly number[];
  /** sizeof(struct pt_regs): copied whole into the scratch map once per call. */
  readonly regsSize: number;
  /** task_struct.thread_info.status (TS_COMPAT: a 32-bit syscall, whose numbers are another table's). */
  readonly tiStatus: number;
  readonly taskRealParent: number;
  readonly taskTgid: number;
  readonly taskPid: number;
  readonly taskNsproxy: number;
  readonly taskCred: number;
  readonly taskSignal: number;
  readonly signalLive: number;
  /** nsproxy member, then the namespace struct's ns.inum (User: cred.user_ns, then user_namespace). */
  readonly ns: Readonly<Record<NamespaceType, { readonly ptr: number; readonly inum: number }>>;
  readonly caps: { readonly Effective: number; readonly Inheritable: number; readonly Permitted: number };
  readonly binprmFilename: number;
}

/** The layout of the running kernel (throws RUNTIME_BTF_INVALID when a field is missing). */
export function killLayoutFrom(btf: BtfLookup): KillLayout {
  const o = (s: string, f: string): number => btf.offsetOf(s, f).offset;
  const ns = (member: string, struct: string): { ptr: number; inum: number } => ({
    ptr: o("nsproxy", member),
    inum: o(struct, "ns.inum"),
  });
  return {
    regs: ["di", "si", "dx", "r10", "r8", "r9"].map((r) => o("pt_regs", r)),
    regsSize: btf.structSize("pt_regs"),
    tiStatus: o("task_struct", "thread_info.status"),
    taskRealParent: o("task_struct", "real_parent"),
    taskTgid: o("task_struct", "tgid"),
    taskPid: o("task_struct", "pid"),
    taskNsproxy: o("task_struct", "nsproxy"),
    taskCred: o("task_struct", "cred"),
    taskSignal: o("task_struct", "signal"),
    signalLive: o("signal_struct", "live"),
    ns: {
      Uts: ns("uts_ns", "uts_namespace"),
      Ipc: ns("ipc_ns", "ipc_namespace"),
      Mnt: ns("mnt_ns", "mnt_namespace"),
      Net: ns("net_ns", "net"),
      Time: ns("time_ns", "time_namespace"),
      Cgroup: ns("cgroup_ns", "cgroup_namespace"),
      User: { ptr: o("cred", "user_ns"), inum: o("user_namespace", "ns.inum") },
    },
    caps: {
      Effective: o("cred", "cap_effective"),
      Inheritable: o("cred", "cap_inheritable"),
      Permitted: o("cred", "cap_permitted"),
    },
    binprmFilename: o("linux_binprm", "filename"),
  };
}
