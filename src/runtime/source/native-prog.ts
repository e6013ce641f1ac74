/**
 * The native event source's kernel programs, generated with our eBPF
 * assembler (../enforce/bpf-asm.ts) at the struct offsets of the running
 * kernel (./btf.ts). Pure: layouts in, instructions out.
 *
 *   raw tracepoint sched_process_exec --> exec record (EXEC_SIZE bytes)
 *   raw tracepoint sched_process_fork --> fork record (threads skipped: child pid != child tgid)
 *   raw tracepoint sched_process_exit --> exit record (the last thread: signal->live == 0)
 *        every record: bpf_ringbuf_reserve -> fill -> submit; a failed reserve
 *        adds one to the per-CPU lost counter (map 1) instead
 *
 * Raw tracepoints (BPF_PROG_TYPE_RAW_TRACEPOINT) hand the programs the
 * tracepoint's own arguments (the task, the binprm, the forked child), so a
 * fork knows its child's tgid directly: no sys_enter_clone* bookkeeping.
 * Kernel memory is read with bpf_probe_read_kernel at offsets from BTF (no
 * clang, no CO-RE relocations: the offsets are resolved before generation);
 * the arguments with bpf_probe_read_user from the new mm, inside the exec,
 * before the process can run (so a process that exits at once keeps them).
 * The cwd walk is unrolled (CWD_DEPTH components plus mount crossings).
 *
 * Registers: r7 the record, r8 the task (exec) or scratch; r6 and r9 the cwd
 * walk's dentry and mount; the stack holds the scratch slot (-8), the key
 * (-12), the walk's root dentry/mount (-24, -32), its position (-40) and
 * component count (-48).
 */
import { Asm, HELPER, type Reg } from "../enforce/bpf-asm.js";
import type { BtfLookup } from "./btf.js";
import {
  ARGS_MAX,
  CWD_DEPTH,
  CWD_MAX,
  EXEC_SIZE,
  FILENAME_MAX,
  KIND_EXEC,
  KIND_EXIT,
  KIND_FORK,
  OFF,
  SMALL_SIZE,
} from "./native-record.js";

/** Struct offsets the programs read at. */
export interface Layout {
  readonly taskMm: number;
  readonly taskRealParent: number;
  readonly taskPid: number;
  readonly taskTgid: number;
  readonly taskLoginuid: number;
  readonly taskNsproxy: number;
  readonly taskStartBoottime: number;
  readonly taskFs: number;
  readonly taskSignal: number;
  readonly taskExitCode: number;
  readonly mmArgStart: number;
  readonly mmArgEnd: number;
  readonly nsproxyNetNs: number;
  readonly netInum: number;
  readonly fsPwd: number;
  readonly fsRoot: number;
  readonly pathMnt: number;
  readonly pathDentry: number;
  readonly dentryParent: number;
  readonly dentryNameLen: number;
  readonly dentryNameName: number;
  readonly mountMnt: number;
  readonly mountParent: number;
  readonly mountMountpoint: number;
  readonly vfsmountRoot: number;
  readonly signalLive: number;
  readonly binprmFilename: number;
}

/** The layout of the running kernel (throws RUNTIME_BTF_INVALID when a field is missing). */
export function layoutFrom(btf: BtfLookup): Layout {
  const o = (s: string, f: string): number => btf.offsetOf(s, f).offset;
  return {
    taskMm: o("task_struct", "mm"),
    taskRealParent: o("task_struct", "real_parent"),
    taskPid: o("task_struct", "pid"),
    taskTgid: o("task_struct", "tgid"),
    taskLoginuid: o("task_struct", "loginuid"),
    taskNsproxy: o("task_struct", "nsproxy"),
    taskStartBoottime: o("task_struct", "start_boottime"),
    taskFs: o("task_struct", "fs"),
    taskSignal: o("task_struct", "signal"),
    taskExitCode: o("task_struct", "exit_code"),
    mmArgStart: o("mm_struct", "arg_start"),
    mmArgEnd: o("mm_struct", "arg_end"),
    nsproxyNetNs: o("nsproxy", "net_ns"),
    netInum: o("net", "ns.inum"),
    fsPwd: o("fs_struct", "pwd"),
    fsRoot: o("fs_struct", "root"),
    pathMnt: o("path", "mnt"),
    pathDentry: o("path", "dentry"),
    dentryParent: o("dentry", "d_parent"),
    dentryNameLen: o("dentry", "d_name.len"),
    dentryNameName: o("dentry", "d_name.name"),
    mountMnt: o("mount", "mnt"),
    mountParent: o("mount", "mnt_parent"),
    mountMountpoint: o("mount", "mnt_mountpoint"),
    vfsmountRoot: o("vfsmount", "mnt_root"),
    signalLive: o("signal_struct", "live"),
    binprmFilename: o("linux_binprm", "filename"),
  };
}

const SLOT = -8;
const KEY = -12;
const ROOT_D = -24;
const ROOT_M = -32;
const POS = -40;
const COUNT = -48;
/** The current component's length, kept across the read of its name. */
const LEN = -64;

/** `dst = *(u64 *)(src + off)` from kernel memory (0 when unreadable). Clobbers r1-r5. */
function loadK(a: Asm, dst: Reg, src: Reg, off: number, size: 4 | 8 = 8): void {
  a.mov64(3, src).add64i(3, off);
  a.st("DW", 10, SLOT, 0).mov64(1, 10).add64i(1, SLOT).mov64i(2, size).call(HELPER.probeReadKernel);
  a.ldx(size === 8 ? "DW" : "W", dst, 10, SLOT);
}

/** Copies `size` bytes of kernel memory at src+off into the record at `at`. Clobbers r1-r5. */
function copyK(a: Asm, at: number, src: Reg, off: number, size: number): void {
  a.mov64(3, src).add64i(3, off);
  a.mov64(1, 7).add64i(1, at).mov64i(2, size).call(HELPER.probeReadKernel);
}

/** Reserves `size` bytes into r7, or counts a lost record and exits. */
function reserve(a: Asm, size: number): void {
  const ok = a.fresh("reserved");
  a.ldMap(1, 0).mov64i(2, size).mov64i(3, 0).call(HELPER.ringbufReserve);
  a.mov64(7, 0).jmpi("jne", 7, 0, ok);
  a.st("W", 10, KEY, 0).ldMap(1, 1).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
  a.jmpi("jeq", 0, 0, "out");
  a.ldx("DW", 1, 0, 0).add64i(1, 1).stx("DW", 0, 0, 1);
  a.ja("out");
  a.label(ok);
}

/** kind, pid (current tgid) and ktime into the record. */
function header(a: Asm, kind: number): void {
  a.st("W", 7, OFF.kind, kind);
  a.call(HELPER.getCurrentPidTgid).rsh64i(0, 32).stx("W", 7, OFF.pid, 0);
  a.call(HELPER.ktimeGetNs).stx("DW", 7, OFF.ktime, 0);
}

function submit(a: Asm): void {
  a.mov64(1, 7).mov64i(2, 0).call(HELPER.ringbufSubmit);
  a.label("out").mov64i(0, 0).exit();
}

/** The cwd: components innermost first, each a length byte then the name, up to the process's root. */
function cwdWalk(a: Asm, l: Layout): void {
  const mntBack = -l.mountMnt; // struct vfsmount * -> struct mount *
  loadK(a, 9, 8, l.taskFs);
  loadK(a, 6, 9, l.fsRoot + l.pathDentry);
  a.stx("DW", 10, ROOT_D, 6);
  loadK(a, 6, 9, l.fsRoot + l.pathMnt);
  a.add64i(6, mntBack).stx("DW", 10, ROOT_M, 6);
  loadK(a, 6, 9, l.fsPwd + l.pathDentry);
  loadK(a, 9, 9, l.fsPwd + l.pathMnt);
  a.add64i(9, mntBack);
  a.st("DW", 10, POS, 0).st("DW", 10, COUNT, 0);
  // r6 = dentry, r9 = mount. Each step: at the root -> done; at a mount's root -> cross to its mount
  // point; at a dentry that is its own parent -> done; else record the name and go up.
  for (let k = 0; k < CWD_DEPTH + 8; k++) {
    const next = a.fresh("next");
    const notRoot = a.fresh("notroot");
    const notMntRoot = a.fresh("notmntroot");
    a.jmpi("jeq", 6, 0, "cwd.cut");
    a.ldx("DW", 1, 10, ROOT_D).jmp("jne", 6, 1, notRoot);
    a.ldx("DW", 1, 10, ROOT_M).jmp("jeq", 9, 1, "cwd.done");
    a.label(notRoot);
    loadK(a, 8, 9, l.mountMnt + l.vfsmountRoot);
    a.jmp("jne", 6, 8, notMntRoot);
    loadK(a, 8, 9, l.mountParent);
    a.jmp("jeq", 9, 8, "cwd.done");
    loadK(a, 6, 9, l.mountMountpoint);
    a.mov64(9, 8).ja(next);
    a.label(notMntRoot);
    loadK(a, 8, 6, l.dentryParent);
    a.jmp("jeq", 6, 8, "cwd.done");
    a.ldx("DW", 1, 10, COUNT).jmpi("jge", 1, CWD_DEPTH, "cwd.cut");
    // the name: length byte, then its bytes, while it fits in CWD_MAX
    loadK(a, 1, 6, l.dentryNameLen, 4);
    a.stx("DW", 10, LEN, 1);
    a.jmpi("jgt", 1, 255, "cwd.cut");
    a.ldx("DW", 2, 10, POS).jmpi("jgt", 2, CWD_MAX - 1, "cwd.cut");
    a.mov64(3, 2)
      .add64(3, 1)
      .jmpi("jgt", 3, CWD_MAX - 1, "cwd.cut");
    a.mov64(3, 7).add64i(3, OFF.cwd).add64(3, 2).stx("B", 3, 0, 1);
    loadK(a, 3, 6, l.dentryNameName);
    a.ldx("DW", 2, 10, LEN).ldx("DW", 4, 10, POS);
    a.jmpi("jgt", 2, 255, "cwd.cut").jmpi("jgt", 4, CWD_MAX - 1, "cwd.cut");
    a.mov64(1, 7)
      .add64i(1, OFF.cwd + 1)
      .add64(1, 4)
      .call(HELPER.probeReadKernel);
    a.ldx("DW", 1, 10, POS).ldx("DW", 2, 10, LEN).add64(1, 2).add64i(1, 1).stx("DW", 10, POS, 1);
    a.ldx("DW", 1, 10, COUNT).add64i(1, 1).stx("DW", 10, COUNT, 1);
    a.mov64(6, 8);
    a.label(next);
  }
  a.label("cwd.cut").st("W", 7, OFF.cwdComplete, 0).ja("cwd.end");
  a.label("cwd.done").st("W", 7, OFF.cwdComplete, 1);
  a.label("cwd.end");
  a.ldx("DW", 1, 10, POS).stx("W", 7, OFF.cwdLen, 1);
  a.ldx("DW", 1, 10, COUNT).stx("W", 7, OFF.cwdComponents, 1);
}

/** sched_process_exec(p, old_pid, bprm): everything the exec event carries. */
export function execProgram(l: Layout): Buffer {
  const a = new Asm();
  a.mov64(6, 1); // ctx: u64 args[]
  reserve(a, EXEC_SIZE);
  header(a, KIND_EXEC);
  a.call(HELPER.getCurrentUidGid).stx("W", 7, OFF.uid, 0);
  a.call(HELPER.getCurrentCgroupId).stx("DW", 7, OFF.cgroup, 0);
  // the binary: bprm->filename
  a.ldx("DW", 9, 6, 16);
  loadK(a, 3, 9, l.binprmFilename);
  a.mov64(1, 7).add64i(1, OFF.filename).mov64i(2, FILENAME_MAX).call(HELPER.probeReadKernelStr);
  a.stx("W", 7, OFF.filenameLen, 0);
  a.call(HELPER.getCurrentTask).mov64(8, 0);
  copyK(a, OFF.auid, 8, l.taskLoginuid, 4);
  copyK(a, OFF.startBoottime, 8, l.taskStartBoottime, 8);
  loadK(a, 9, 8, l.taskRealParent);
  copyK(a, OFF.ppidOrCode, 9, l.taskTgid, 4);
  const noNs = a.fresh("nons");
  a.st("W", 7, OFF.netns, 0);
  loadK(a, 9, 8, l.taskNsproxy);
  a.jmpi("jeq", 9, 0, noNs);
  loadK(a, 9, 9, l.nsproxyNetNs);
  a.jmpi("jeq", 9, 0, noNs);
  copyK(a, OFF.netns, 9, l.netInum, 4);
  a.label(noNs);
  // the arguments: arg_start..arg_end of the new mm, at most ARGS_MAX bytes
  const fits = a.fresh("fits");
  loadK(a, 9, 8, l.taskMm);
  loadK(a, 6, 9, l.mmArgEnd);
  loadK(a, 9, 9, l.mmArgStart);
  a.sub64(6, 9).stx("DW", 7, OFF.argBytes, 6);
  a.mov64(2, 6).jmpi("jgt", 2, ARGS_MAX, fits);
  a.ja(`${fits}.set`);
  a.label(fits).mov64i(2, ARGS_MAX);
  a.label(`${fits}.set`).stx("W", 7, OFF.argLen, 2);
  a.mov64(3, 9).mov64(1, 7).add64i(1, OFF.args).call(HELPER.probeReadUser);
  a.stx("W", 7, OFF.argErr, 0);
  cwdWalk(a, l);
  submit(a);
  return a.encode();
}

/** sched_process_fork(parent, child): a new process (a new thread is skipped). */
export function forkProgram(l: Layout): Buffer {
  const a = new Asm();
  a.ldx("DW", 6, 1, 8); // the child task
  loadK(a, 8, 6, l.taskPid, 4);
  loadK(a, 9, 6, l.taskTgid, 4);
  a.jmp("jne", 8, 9, "out");
  reserve(a, SMALL_SIZE);
  a.st("W", 7, OFF.kind, KIND_FORK).stx("W", 7, OFF.pid, 9);
  a.call(HELPER.ktimeGetNs).stx("DW", 7, OFF.ktime, 0);
  a.call(HELPER.getCurrentPidTgid).rsh64i(0, 32).stx("W", 7, OFF.ppidOrCode, 0);
  submit(a);
  return a.encode();
}

/** sched_process_exit(p, ...): the last thread of a process (signal->live reached 0). */
export function exitProgram(l: Layout): Buffer {
  const a = new Asm();
  a.call(HELPER.getCurrentTask).mov64(8, 0);
  loadK(a, 9, 8, l.taskSignal);
  loadK(a, 9, 9, l.signalLive, 4);
  a.jmpi("jne", 9, 0, "out");
  reserve(a, SMALL_SIZE);
  header(a, KIND_EXIT);
  copyK(a, OFF.ppidOrCode, 8, l.taskExitCode, 4);
  submit(a);
  return a.encode();
}

/** The programs by raw tracepoint name. */
export function nativePrograms(l: Layout): { tracepoint: string; insns: Buffer }[] {
  return [
    { tracepoint: "sched_process_fork", insns: forkProgram(l) },
    { tracepoint: "sched_process_exec", insns: execProgram(l) },
    { tracepoint: "sched_process_exit", insns: exitProgram(l) },
  ];
}
