/**
 * The syscall guard's kernel programs: a TracingPolicy's syscall probes as
 * one raw tracepoint program on `sys_enter`, its selectors and actions as
 * immediates (no rule maps to keep in sync), generated with our eBPF
 * assembler at the running kernel's offsets (kill-layout.ts). Pure.
 *
 *   GuardSpec --guardPrograms--> sys_enter program (+ sched_process_exec/fork/exit when matchBinaries is used)
 *
 * At each syscall entry: the syscall number is compared first (every other
 * syscall returns after two instructions); then a 32-bit (compat) syscall is
 * skipped (its numbers are another table's, as the kernel's own syscall
 * tracepoints skip it), the scope (the selected endpoints' network
 * namespaces) is checked, the caller's registers are copied once, and each
 * group (one probe on this syscall) runs its selectors in order: the first
 * that matches applies its actions. Sigkill/Signal is bpf_send_signal, in the
 * offending task's context, on its thread group.
 *
 * When the signal acts (checked on 6.18, test/runtime/enforce/native-kill.test.ts):
 * the program runs before the syscall's body; the signal is pending when the
 * body runs and is delivered on the way back to user space, so the process
 * never sees the syscall's result and runs no further instruction. The body
 * itself still runs unless it checks for a fatal signal first: an openat
 * opens the file (and O_CREAT creates it) but nothing is read from it; a
 * write(2) to a regular file writes nothing (the page-cache write loop stops
 * at a pending fatal signal); a connect() sends its SYN. An exec's
 * sys_enter runs before the new program is loaded: it is never run.
 *
 * Strings (paths) are read from the caller's memory with
 * bpf_probe_read_user_str, up to 4,095 bytes; a string the kernel cannot
 * read without faulting (a page not yet touched) is unreadable: Equal,
 * Prefix and Postfix do not match it, their Not- forms do (as the bpftrace
 * path). The kernel reads the same memory again after us (a thread of the
 * caller can change it in between): a syscall hook sees what the caller
 * passed, not what the kernel used; Override on file hooks (fanotify) sees
 * the file itself.
 *
 * Registers: r6 the context, r8 the syscall number, r9 the scratch map value
 * (paths in 4 KiB slots, then the caller's pt_regs); r7 the event record.
 */
import { Asm, HELPER } from "./bpf-asm.js";
import {
  anyOf,
  BITS,
  FLAGS,
  KEY,
  LEN0,
  loadK,
  NETNS,
  PBITS,
  prelude,
  strOne,
  TASK,
  TGID,
} from "./kill-asm.js";
import type { KillLayout } from "./kill-layout.js";
import { binaryBits, learnPrograms } from "./kill-learn.js";
import { EVENT_SIZE, REC, STR_MAX } from "./kill-record.js";
import {
  MAX_BINARIES,
  PATH_READ,
  REGS_AT,
  type GuardGroup,
  type GuardSelector,
  type GuardSpec,
  type IntOp,
} from "./kill-spec.js";

const TS_COMPAT = 0x0002;

/** Jumps to `miss` unless the syscall argument `arg` compares with `v` by `op`. */
function intOne(a: Asm, l: KillLayout, arg: number, wide: boolean, op: IntOp, v: bigint, miss: string): void {
  a.ldx("DW", 1, 9, REGS_AT + (l.regs[arg] ?? 0));
  const s64 = BigInt.asIntN(64, v);
  const fits32 = s64 >= -(1n << 31n) && s64 < 1n << 31n;
  const imm = Number(BigInt.asIntN(32, v));
  const ok = a.fresh("int_ok");
  const jop = op === "Equal" ? "jeq" : op === "GT" ? "jsgt" : op === "LT" ? "jslt" : "jset";
  if (!wide) a.jmp32i(jop, 1, imm, ok);
  else if (fits32 && op !== "Mask") a.jmpi(jop, 1, imm, ok);
  else a.ldImm64(2, s64).jmp(jop, 1, 2, ok);
  a.ja(miss).label(ok);
}

function selector(
  a: Asm,
  l: KillLayout,
  spec: GuardSpec,
  g: GuardGroup,
  s: GuardSelector,
  miss: string,
  end: string,
): void {
  for (const m of s.strings) {
    const neg = m.op.startsWith("Not");
    const op = (neg ? m.op.slice(3) : m.op) as "Equal" | "Prefix" | "Postfix";
    anyOf(a, m.values, neg, (v, fail) => strOne(a, m.slot, op, v, fail), miss);
  }
  for (const m of s.ints) {
    const neg = m.op === "NotEqual";
    const op = neg ? "Equal" : m.op;
    anyOf(a, m.values, neg, (v, fail) => intOne(a, l, m.arg, m.wide, op, v, fail), miss);
  }
  for (const m of s.pids)
    anyOf(a, m.values, !m.in, (v, fail) => a.ldx("W", 1, 10, TGID).jmp32i("jne", 1, v, fail), miss);
  for (const m of s.namespaces) {
    const n = l.ns[m.ns];
    a.ldx("DW", 7, 10, TASK);
    if (m.ns === "User") loadK(a, 7, 7, l.taskCred);
    else loadK(a, 7, 7, l.taskNsproxy);
    // No namespaces (an exiting task): in none of them.
    const ok = a.fresh("ns_ok");
    a.jmpi("jeq", 7, 0, m.in ? miss : ok);
    loadK(a, 7, 7, n.ptr);
    loadK(a, 7, 7, n.inum, 4);
    anyOf(a, m.values, !m.in, (v, fail) => a.jmp32i("jne", 7, v | 0, fail), miss);
    a.label(ok);
  }
  for (const m of s.caps) {
    a.ldx("DW", 7, 10, TASK);
    loadK(a, 7, 7, l.taskCred);
    loadK(a, 1, 7, l.caps[m.type]);
    a.ldImm64(2, m.mask);
    if (m.in) {
      const ok = a.fresh("cap_ok");
      a.jmp("jset", 1, 2, ok).ja(miss).label(ok);
    } else a.jmp("jset", 1, 2, miss);
  }
  const bits = (slot: number, m: { bit: number; in: boolean }): void => {
    a.ldx("DW", 1, 10, slot);
    if (m.in) {
      const ok = a.fresh("bit_ok");
      a.jmp32i("jset", 1, (2 ** m.bit) | 0, ok)
        .ja(miss)
        .label(ok);
    } else a.jmp32i("jset", 1, (2 ** m.bit) | 0, miss);
  };
  for (const m of s.binaries) bits(BITS, m);
  for (const m of s.follows) bits(BITS, m);
  for (const m of s.parentBinaries) bits(PBITS, m);
  // Matched: this selector decides.
  if (s.rule === undefined) {
    a.ja(end);
    return;
  }
  a.st("DW", 10, FLAGS, 0);
  if (s.signal !== undefined) {
    const skip = a.fresh("exempt");
    a.ldx("W", 1, 10, TGID).jmp32i("jeq", 1, 1, skip).jmp32i("jeq", 1, spec.agentPid, skip);
    if (spec.scope === "node") {
      a.ldx("DW", 7, 10, TASK);
      loadK(a, 7, 7, l.taskRealParent);
      loadK(a, 7, 7, l.taskTgid, 4);
      a.jmp32i("jeq", 7, spec.agentPid, skip);
    }
    a.mov64i(1, s.signal).call(HELPER.sendSignal).jmpi("jne", 0, 0, skip);
    a.st("DW", 10, FLAGS, 1);
    a.label(skip);
  }
  if (s.post || s.signal !== undefined) emit(a, l, s.rule, g.reportSlot, end);
  a.ja(end);
}

/** The event record (kill-record.ts) for `rule`, with the string of `slot`. */
function emit(a: Asm, l: KillLayout, rule: number, slot: number | undefined, end: string): void {
  const ok = a.fresh("reserved");
  a.ldMap(1, 0).mov64i(2, EVENT_SIZE).mov64i(3, 0).call(HELPER.ringbufReserve);
  a.mov64(7, 0).jmpi("jne", 7, 0, ok);
  // Lost: counted; a kill already sent stands.
  a.st("W", 10, KEY, 0).ldMap(1, 1).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
  a.jmpi("jeq", 0, 0, end).mov64i(1, 1).atomicAdd64(0, 0, 1);
  a.ja(end).label(ok);
  a.st("W", 7, REC.rule, rule).ldx("DW", 1, 10, FLAGS).stx("W", 7, REC.flags, 1);
  a.ldx("W", 1, 10, TGID).stx("W", 7, REC.pid, 1);
  a.call(HELPER.getCurrentPidTgid).stx("W", 7, REC.tid, 0);
  a.call(HELPER.getCurrentUidGid).stx("W", 7, REC.uid, 0);
  a.ldx("W", 1, 10, NETNS).stx("W", 7, REC.netns, 1);
  a.call(HELPER.getCurrentCgroupId).stx("DW", 7, REC.cgroup, 0);
  a.call(HELPER.ktimeGetNs).stx("DW", 7, REC.ktime, 0);
  a.mov64(1, 7).add64i(1, REC.comm).mov64i(2, 16).call(HELPER.getCurrentComm);
  for (let i = 0; i < 6; i++) a.ldx("DW", 1, 9, REGS_AT + (l.regs[i] ?? 0)).stx("DW", 7, REC.args + 8 * i, 1);
  if (slot === undefined) a.st("W", 7, REC.strLen, 0);
  else {
    a.ldx("DW", 1, 10, LEN0 - 8 * slot).stx("W", 7, REC.strLen, 1);
    a.mov64(3, 9).add64i(3, slot * PATH_READ);
    a.mov64(1, 7).add64i(1, REC.str).mov64i(2, STR_MAX).call(HELPER.probeReadKernel);
  }
  a.mov64(1, 7).mov64i(2, 0).call(HELPER.ringbufSubmit);
}

/** The sys_enter program: `groups` in order, every group of a syscall runs (each is one probe). */
export function sysEnterProgram(spec: GuardSpec, l: KillLayout): Buffer {
  const a = new Asm();
  const nrs = [...new Set(spec.groups.map((g) => g.nr))];
  a.mov64(6, 1).ldx("DW", 8, 6, 8);
  for (const nr of nrs) a.jmpi("jeq", 8, nr, "hit");
  a.ja("out");
  a.label("hit");
  a.call(HELPER.getCurrentTask).stx("DW", 10, TASK, 0).mov64(7, 0);
  loadK(a, 1, 7, l.tiStatus, 4);
  a.jmp32i("jset", 1, TS_COMPAT, "out");
  prelude(a, spec, l);
  a.call(HELPER.getCurrentPidTgid).rsh64i(0, 32).stx("DW", 10, TGID, 0);
  binaryBits(a, spec, l);
  // The scratch map: paths and the caller's registers.
  a.st("W", 10, KEY, 0).ldMap(1, 2).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
  a.jmpi("jeq", 0, 0, "out").mov64(9, 0);
  a.ldx("DW", 3, 6, 0).mov64(1, 9).add64i(1, REGS_AT).mov64i(2, Math.min(l.regsSize, 256));
  a.call(HELPER.probeReadKernel).jmpi("jne", 0, 0, "out");
  spec.groups.forEach((g, gi) => {
    const end = `g${gi}.end`;
    a.jmpi("jne", 8, g.nr, end);
    g.slots.forEach((arg, slot) => {
      a.ldx("DW", 3, 9, REGS_AT + (l.regs[arg] ?? 0));
      a.mov64(1, 9)
        .add64i(1, slot * PATH_READ)
        .mov64i(2, PATH_READ)
        .call(HELPER.probeReadUserStr);
      a.stx("DW", 10, LEN0 - 8 * slot, 0);
    });
    if (g.selectors.length === 0) throw new Error("internal: a group without selectors");
    g.selectors.forEach((s, si) => {
      const miss = `g${gi}.s${si}.miss`;
      selector(a, l, spec, g, s, miss, end);
      a.label(miss);
    });
    a.label(end);
  });
  a.label("out").mov64i(0, 0).exit();
  return a.encode();
}

/** The programs by raw tracepoint name: those that learn binaries first (attached before sys_enter reads them). */
export function guardPrograms(spec: GuardSpec, l: KillLayout): { tracepoint: string; insns: Buffer }[] {
  if (spec.binaries.length + spec.follows.length > MAX_BINARIES)
    throw new Error(`internal: more than ${MAX_BINARIES} binaries and follows`);
  const learn = learnPrograms(spec, l);
  return [...learn, { tracepoint: "sys_enter", insns: sysEnterProgram(spec, l) }];
}
