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
import type { NamespaceType } from "../policy/types.js";
import { Asm, HELPER, type Reg } from "./bpf-asm.js";
import type { KillLayout } from "./kill-layout.js";
import { EVENT_SIZE, REC, STR_MAX } from "./kill-record.js";

/** Bytes of a path read for matching (with its NUL); a slot of the scratch map each. */
export const PATH_READ = 4096;
/** String slots per probe (a probe compares at most this many distinct string arguments). */
export const STR_SLOTS = 2;
const REGS_AT = PATH_READ * STR_SLOTS;
export const SCRATCH_SIZE = REGS_AT + 256;
/** Bits of a process's mask (one per matchBinaries/matchParentBinaries entry, one per followForks entry). */
export const MAX_BINARIES = 32;
const TS_COMPAT = 0x0002;
/** Follows take the mask's bits from the top (binaries from the bottom). */
export const followBit = (j: number): number => MAX_BINARIES - 1 - j;

export type StrOp = "Equal" | "NotEqual" | "Prefix" | "NotPrefix" | "Postfix" | "NotPostfix";
export type IntOp = "Equal" | "NotEqual" | "GT" | "LT" | "Mask";

export interface GuardSelector {
  /** The event's rule id; undefined for an Override selector (served by fanotify: it decides, nothing here). */
  readonly rule: number | undefined;
  readonly strings: readonly { slot: number; op: StrOp; values: readonly string[] }[];
  /** `arg`: the syscall argument (0-5); `wide`: a 64-bit argument (else its low 32 bits, signed). */
  readonly ints: readonly { arg: number; wide: boolean; op: IntOp; values: readonly bigint[] }[];
  readonly pids: readonly { in: boolean; values: readonly number[] }[];
  readonly namespaces: readonly { ns: NamespaceType; in: boolean; values: readonly number[] }[];
  readonly caps: readonly { type: "Effective" | "Inheritable" | "Permitted"; in: boolean; mask: bigint }[];
  /** `bit`: the binaries entry; `in`: the process's binary must match it (In, Prefix) or must not. */
  readonly binaries: readonly { bit: number; in: boolean }[];
  /** The same against the parent's (real_parent's) mask. */
  readonly parentBinaries: readonly { bit: number; in: boolean }[];
  /** `bit`: the follows entry (matchPIDs followForks); `in`: the process must descend from its PIDs or must not. */
  readonly follows: readonly { bit: number; in: boolean }[];
  /** Sigkill (9) or Signal N. */
  readonly signal: number | undefined;
  readonly post: boolean;
}

export interface GuardGroup {
  /** x86-64 syscall number. */
  readonly nr: number;
  /** The syscall argument read into each string slot. */
  readonly slots: readonly number[];
  /** The slot whose string events carry (the probe's first declared string argument). */
  readonly reportSlot: number | undefined;
  readonly selectors: readonly GuardSelector[];
}

export interface GuardSpec {
  readonly groups: readonly GuardGroup[];
  /** Network namespace inodes of the selected endpoints, or "node". */
  readonly scope: readonly number[] | "node";
  /** Never signalled: PID 1, the agent, and (node-wide) the agent's children. */
  readonly agentPid: number;
  /** The policy's matchBinaries entries: bit i set in a process's mask when its exec matched entry i. */
  readonly binaries: readonly { readonly prefix: boolean; readonly values: readonly string[] }[];
  /**
   * matchPIDs followForks entries: bit followBit(j) set for the listed processes (seeded at load by
   * the loader) and inherited by every fork, kept across exec.
   */
  readonly follows: readonly { readonly pids: readonly number[] }[];
  /** Whether some selector reads the parent's mask (matchParentBinaries). */
  readonly parents: boolean;
}

// Stack slots.
const SLOT = -8;
const TASK = -16;
const BITS = -32;
const LEN0 = -40; // LEN0 - 8 * slot
const FLAGS = -56;
const TGID = -64;
const KEY = -72;
const NETNS = -80;
const PBITS = -88;

/** `dst = *(size *)(src + off)` from kernel memory (0 when unreadable). Clobbers r1-r5. */
function loadK(a: Asm, dst: Reg, src: Reg, off: number, size: 4 | 8 = 8): void {
  a.mov64(3, src).add64i(3, off);
  a.st("DW", 10, SLOT, 0).mov64(1, 10).add64i(1, SLOT).mov64i(2, size).call(HELPER.probeReadKernel);
  a.ldx(size === 8 ? "DW" : "W", dst, 10, SLOT);
}

/** Jumps to `miss` unless the `v.length` bytes at ptr+base equal `v` (r1, r2 scratch). */
function bytesEqual(a: Asm, ptr: Reg, base: number, v: string, miss: string): void {
  const b = Buffer.from(v, "latin1");
  let i = 0;
  while (i < b.length) {
    const left = b.length - i;
    if (left >= 8) {
      a.ldx("DW", 1, ptr, base + i)
        .ldImm64(2, b.readBigUInt64LE(i))
        .jmp("jne", 1, 2, miss);
      i += 8;
    } else if (left >= 4) {
      a.ldx("W", 1, ptr, base + i).jmp32i("jne", 1, b.readInt32LE(i), miss);
      i += 4;
    } else if (left >= 2) {
      a.ldx("H", 1, ptr, base + i).jmpi("jne", 1, b.readUInt16LE(i), miss);
      i += 2;
    } else {
      a.ldx("B", 1, ptr, base + i).jmpi("jne", 1, b.readUInt8(i), miss);
      i += 1;
    }
  }
}

/** Jumps to `miss` unless the string in `slot` (r9 + slot * PATH_READ, length at LEN0) matches `v` by `op` (positive form). */
function strOne(a: Asm, slot: number, op: "Equal" | "Prefix" | "Postfix", v: string, miss: string): void {
  const L = v.length;
  a.ldx("DW", 1, 10, LEN0 - 8 * slot);
  if (op === "Equal") {
    a.jmpi("jne", 1, L + 1, miss);
    bytesEqual(a, 9, slot * PATH_READ, v, miss);
  } else if (op === "Prefix") {
    a.jmpi("jslt", 1, L + 1, miss);
    bytesEqual(a, 9, slot * PATH_READ, v, miss);
  } else {
    // The tail: bytes [len-1-L, len-1) of the slot, at a bounded variable offset.
    a.jmpi("jslt", 1, L + 1, miss).add64i(1, -(L + 1));
    a.jmpi("jgt", 1, PATH_READ - 1 - L, miss);
    a.mov64(3, 9)
      .add64i(3, slot * PATH_READ)
      .add64(3, 1);
    bytesEqual(a, 3, 0, v, miss);
  }
}

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

/** Any of `values` (tried in turn by `one(value, fail)`): on to the next instruction, else `miss`; negated: the reverse. */
function anyOf<T>(
  a: Asm,
  values: readonly T[],
  negate: boolean,
  one: (v: T, fail: string) => void,
  miss: string,
): void {
  const ok = a.fresh("any_ok");
  for (const v of values) {
    const next = a.fresh("any_next");
    one(v, next);
    a.ja(negate ? miss : ok).label(next);
  }
  if (!negate) a.ja(miss);
  a.label(ok);
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

/** The netns (for scope and events) onto the stack; out of scope: to "out". Needs TASK. */
function prelude(a: Asm, spec: GuardSpec, l: KillLayout): void {
  a.st("DW", 10, NETNS, 0);
  const noNs = a.fresh("nons");
  a.ldx("DW", 7, 10, TASK);
  loadK(a, 7, 7, l.taskNsproxy);
  a.jmpi("jeq", 7, 0, noNs);
  loadK(a, 7, 7, l.ns.Net.ptr);
  a.jmpi("jeq", 7, 0, noNs);
  loadK(a, 7, 7, l.ns.Net.inum, 4);
  a.stx("DW", 10, NETNS, 7);
  a.label(noNs);
  if (spec.scope !== "node") {
    a.ldx("DW", 1, 10, NETNS);
    for (const inode of spec.scope) a.jmp32i("jeq", 1, inode | 0, "inscope");
    a.ja("out").label("inscope");
  }
}

const learns = (spec: GuardSpec): boolean => spec.binaries.length + spec.follows.length > 0;

/** The masks of the caller and (when asked) of its parent onto the stack (0 when unknown). Needs TGID, TASK. */
function binaryBits(a: Asm, spec: GuardSpec, l: KillLayout): void {
  a.st("DW", 10, BITS, 0).st("DW", 10, PBITS, 0);
  if (!learns(spec)) return;
  const lookup = (slot: number): void => {
    const none = a.fresh("nobits");
    a.ldMap(1, 3).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
    a.jmpi("jeq", 0, 0, none).ldx("DW", 1, 0, 0).stx("DW", 10, slot, 1);
    a.label(none);
  };
  a.ldx("DW", 1, 10, TGID).stx("W", 10, KEY, 1);
  lookup(BITS);
  if (!spec.parents) return;
  a.ldx("DW", 7, 10, TASK);
  loadK(a, 7, 7, l.taskRealParent);
  loadK(a, 7, 7, l.taskTgid, 4);
  a.stx("W", 10, KEY, 7);
  lookup(PBITS);
}

/**
 * sched_process_exec(p, old_pid, bprm): the new program's path (bprm->filename, as given to
 * execve) against every matchBinaries entry; the process's follow bits stay, its binary bits are
 * the new program's; the mask is stored for the process (or removed when empty).
 */
function execProgram(spec: GuardSpec, l: KillLayout): Buffer {
  const a = new Asm();
  a.mov64(6, 1).call(HELPER.getCurrentTask).stx("DW", 10, TASK, 0);
  // Parents may live outside the selected endpoints: with matchParentBinaries every exec is learnt.
  if (!spec.parents) prelude(a, spec, l);
  a.st("W", 10, KEY, 0).ldMap(1, 2).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
  a.jmpi("jeq", 0, 0, "out").mov64(9, 0);
  a.ldx("DW", 7, 6, 16);
  loadK(a, 3, 7, l.binprmFilename);
  a.mov64(1, 9).mov64i(2, PATH_READ).call(HELPER.probeReadKernelStr).stx("DW", 10, LEN0, 0);
  a.st("DW", 10, BITS, 0);
  a.call(HELPER.getCurrentPidTgid).rsh64i(0, 32).stx("W", 10, KEY, 0);
  const followMask = spec.follows.reduce((m, _, j) => m | (2 ** followBit(j)), 0) | 0;
  if (followMask !== 0) {
    const none = a.fresh("nofollow");
    a.ldMap(1, 3).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
    a.jmpi("jeq", 0, 0, none).ldx("DW", 1, 0, 0).and32i(1, followMask).stx("DW", 10, BITS, 1);
    a.label(none);
  }
  spec.binaries.forEach((b, i) => {
    const no = a.fresh("bin_no");
    anyOf(a, b.values, false, (v, fail) => strOne(a, 0, b.prefix ? "Prefix" : "Equal", v, fail), no);
    a.ldx("DW", 1, 10, BITS)
      .or64i(1, (2 ** i) | 0)
      .stx("DW", 10, BITS, 1);
    a.label(no);
  });
  a.ldx("DW", 1, 10, BITS).jmpi("jeq", 1, 0, "del");
  a.ldMap(1, 3).mov64(2, 10).add64i(2, KEY).mov64(3, 10).add64i(3, BITS).mov64i(4, 0);
  a.call(HELPER.mapUpdateElem).ja("out");
  a.label("del").ldMap(1, 3).mov64(2, 10).add64i(2, KEY).call(HELPER.mapDeleteElem);
  a.label("out").mov64i(0, 0).exit();
  return a.encode();
}

/**
 * sched_process_fork(parent, child): a new process inherits its parent's mask (a new thread shares
 * it); a parent without one leaves none for the child (a stale entry of a reused PID is removed).
 */
function forkProgram(l: KillLayout): Buffer {
  const a = new Asm();
  a.ldx("DW", 7, 1, 8);
  loadK(a, 8, 7, l.taskPid, 4);
  loadK(a, 6, 7, l.taskTgid, 4);
  a.jmp("jne", 8, 6, "out");
  a.call(HELPER.getCurrentPidTgid).rsh64i(0, 32).stx("W", 10, KEY, 0);
  a.ldMap(1, 3).mov64(2, 10).add64i(2, KEY).call(HELPER.mapLookupElem);
  a.stx("W", 10, KEY, 6);
  a.jmpi("jeq", 0, 0, "del").ldx("DW", 1, 0, 0).stx("DW", 10, BITS, 1);
  a.ldMap(1, 3).mov64(2, 10).add64i(2, KEY).mov64(3, 10).add64i(3, BITS).mov64i(4, 0);
  a.call(HELPER.mapUpdateElem).ja("out");
  a.label("del").ldMap(1, 3).mov64(2, 10).add64i(2, KEY).call(HELPER.mapDeleteElem);
  a.label("out").mov64i(0, 0).exit();
  return a.encode();
}

/** sched_process_exit(p, ...): the last thread of a process (signal->live reached 0) drops its mask. */
function exitProgram(l: KillLayout): Buffer {
  const a = new Asm();
  a.call(HELPER.getCurrentTask).mov64(7, 0);
  loadK(a, 7, 7, l.taskSignal);
  loadK(a, 1, 7, l.signalLive, 4);
  a.jmpi("jne", 1, 0, "out");
  a.call(HELPER.getCurrentPidTgid).rsh64i(0, 32).stx("W", 10, KEY, 0);
  a.ldMap(1, 3).mov64(2, 10).add64i(2, KEY).call(HELPER.mapDeleteElem);
  a.label("out").mov64i(0, 0).exit();
  return a.encode();
}

/** The programs by raw tracepoint name: those that learn binaries first (attached before sys_enter reads them). */
export function guardPrograms(spec: GuardSpec, l: KillLayout): { tracepoint: string; insns: Buffer }[] {
  if (spec.binaries.length + spec.follows.length > MAX_BINARIES)
    throw new Error(`internal: more than ${MAX_BINARIES} binaries and follows`);
  const learn = !learns(spec)
    ? []
    : [
        { tracepoint: "sched_process_fork", insns: forkProgram(l) },
        { tracepoint: "sched_process_exec", insns: execProgram(spec, l) },
        { tracepoint: "sched_process_exit", insns: exitProgram(l) },
      ];
  return [...learn, { tracepoint: "sys_enter", insns: sysEnterProgram(spec, l) }];
}
