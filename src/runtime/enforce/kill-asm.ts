/**
 * The building blocks the syscall guard's programs share (kill-prog.ts,
 * kill-learn.ts): the stack slots, kernel reads, string comparisons against
 * immediates, "any of" chains and the scope check. Pure: instructions out.
 */
import { Asm, HELPER, type Reg } from "./bpf-asm.js";
import type { KillLayout } from "./kill-layout.js";
import { PATH_READ, type GuardSpec } from "./kill-spec.js";

// Stack slots.
export const SLOT = -8;
export const TASK = -16;
export const BITS = -32;
export const LEN0 = -40; // LEN0 - 8 * slot
export const FLAGS = -56;
export const TGID = -64;
export const KEY = -72;
export const NETNS = -80;
export const PBITS = -88;

/** `dst = *(size *)(src + off)` from kernel memory (0 when unreadable). Clobbers r1-r5. */
export function loadK(a: Asm, dst: Reg, src: Reg, off: number, size: 4 | 8 = 8): void {
  a.mov64(3, src).add64i(3, off);
  a.st("DW", 10, SLOT, 0).mov64(1, 10).add64i(1, SLOT).mov64i(2, size).call(HELPER.probeReadKernel);
  a.ldx(size === 8 ? "DW" : "W", dst, 10, SLOT);
}

/** Jumps to `miss` unless the `v.length` bytes at ptr+base equal `v` (r1, r2 scratch). */
export function bytesEqual(a: Asm, ptr: Reg, base: number, v: string, miss: string): void {
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
export function strOne(
  a: Asm,
  slot: number,
  op: "Equal" | "Prefix" | "Postfix",
  v: string,
  miss: string,
): void {
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

/** Any of `values` (tried in turn by `one(value, fail)`): on to the next instruction, else `miss`; negated: the reverse. */
export function anyOf<T>(
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

/** The netns (for scope and events) onto the stack; out of scope: to "out". Needs TASK. */
export function prelude(a: Asm, spec: GuardSpec, l: KillLayout): void {
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
