/**
 * The syscall guard's learning programs: a mask per process (the policy's
 * binaries its exec matched, the followForks entries it descends from),
 * kept in the loader's map 3 and read by the sys_enter program (kill-prog.ts)
 * for matchBinaries, matchParentBinaries and followForks. Pure.
 *
 *   sched_process_exec -> binary bits of the new program (follow bits kept)
 *   sched_process_fork -> the child inherits the parent's mask
 *   sched_process_exit -> the last thread drops it
 */
import { Asm, HELPER } from "./bpf-asm.js";
import { anyOf, BITS, KEY, LEN0, loadK, PBITS, prelude, strOne, TASK, TGID } from "./kill-asm.js";
import type { KillLayout } from "./kill-layout.js";
import { followBit, learns, PATH_READ, type GuardSpec } from "./kill-spec.js";

/** The masks of the caller and (when asked) of its parent onto the stack (0 when unknown). Needs TGID, TASK. */
export function binaryBits(a: Asm, spec: GuardSpec, l: KillLayout): void {
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

/** The learning programs by raw tracepoint name (none when the policy keeps no masks). */
export function learnPrograms(spec: GuardSpec, l: KillLayout): { tracepoint: string; insns: Buffer }[] {
  return !learns(spec)
    ? []
    : [
        { tracepoint: "sched_process_fork", insns: forkProgram(l) },
        { tracepoint: "sched_process_exec", insns: execProgram(spec, l) },
        { tracepoint: "sched_process_exit", insns: exitProgram(l) },
      ];
}
