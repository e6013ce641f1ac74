/**
 * A small eBPF assembler: the instructions the connect guard's programs
 * (connect-prog.ts) and the native process event source's programs
 * (../source/native-prog.ts) use, with forward labels, encoded as the kernel reads them
 * (struct bpf_insn, 8 bytes, little-endian). Pure: no I/O.
 */

const CLASS = { LD: 0x00, LDX: 0x01, ST: 0x02, STX: 0x03, ALU: 0x04, JMP: 0x05, JMP32: 0x06, ALU64: 0x07 };
const SIZE = { W: 0x00, H: 0x08, B: 0x10, DW: 0x18 } as const;
const MODE = { IMM: 0x00, MEM: 0x60, ATOMIC: 0xc0 };
const SRC_K = 0x00;
const SRC_X = 0x08;
const ALU_OP = { add: 0x00, sub: 0x10, or: 0x40, and: 0x50, rsh: 0x70, mov: 0xb0, end: 0xd0 } as const;
const JMP_OP = {
  ja: 0x00,
  jeq: 0x10,
  jgt: 0x20,
  jge: 0x30,
  jne: 0x50,
  jsgt: 0x60,
  call: 0x80,
  exit: 0x90,
  jset: 0x40,
  jslt: 0xc0,
} as const;
const PSEUDO_MAP_FD = 1;

export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
export type Size = keyof typeof SIZE;
export type JmpOp = "jeq" | "jne" | "jsgt" | "jslt" | "jset" | "jgt" | "jge";

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** A jump to this label, resolved at encode time. */
  label?: string;
}

export class Asm {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();
  private n = 0;

  /** A fresh label name. */
  fresh(tag: string): string {
    return `${tag}.${this.n++}`;
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.labels.set(name, this.insns.length);
    return this;
  }

  private push(code: number, dst: number, src: number, off: number, imm: number, label?: string): this {
    this.insns.push({ code, dst, src, off, imm: imm | 0, ...(label === undefined ? {} : { label }) });
    return this;
  }

  mov64(dst: Reg, src: Reg): this {
    return this.push(CLASS.ALU64 | ALU_OP.mov | SRC_X, dst, src, 0, 0);
  }
  mov64i(dst: Reg, imm: number): this {
    return this.push(CLASS.ALU64 | ALU_OP.mov | SRC_K, dst, 0, 0, imm);
  }
  mov32(dst: Reg, src: Reg): this {
    return this.push(CLASS.ALU | ALU_OP.mov | SRC_X, dst, src, 0, 0);
  }
  and32i(dst: Reg, imm: number): this {
    return this.push(CLASS.ALU | ALU_OP.and | SRC_K, dst, 0, 0, imm);
  }
  or64i(dst: Reg, imm: number): this {
    return this.push(CLASS.ALU64 | ALU_OP.or | SRC_K, dst, 0, 0, imm);
  }
  add64i(dst: Reg, imm: number): this {
    return this.push(CLASS.ALU64 | ALU_OP.add | SRC_K, dst, 0, 0, imm);
  }
  add64(dst: Reg, src: Reg): this {
    return this.push(CLASS.ALU64 | ALU_OP.add | SRC_X, dst, src, 0, 0);
  }
  sub64(dst: Reg, src: Reg): this {
    return this.push(CLASS.ALU64 | ALU_OP.sub | SRC_X, dst, src, 0, 0);
  }
  rsh64i(dst: Reg, imm: number): this {
    return this.push(CLASS.ALU64 | ALU_OP.rsh | SRC_K, dst, 0, 0, imm);
  }
  /** Host (little-endian) to big-endian, `bits` wide: turns a network-order load into a number. */
  be(dst: Reg, bits: 16 | 32): this {
    return this.push(CLASS.ALU | ALU_OP.end | SRC_X, dst, 0, 0, bits);
  }
  ldx(size: Size, dst: Reg, src: Reg, off: number): this {
    return this.push(CLASS.LDX | MODE.MEM | SIZE[size], dst, src, off, 0);
  }
  stx(size: Size, dst: Reg, off: number, src: Reg): this {
    return this.push(CLASS.STX | MODE.MEM | SIZE[size], dst, src, off, 0);
  }
  st(size: Size, dst: Reg, off: number, imm: number): this {
    return this.push(CLASS.ST | MODE.MEM | SIZE[size], dst, 0, off, imm);
  }
  /** `lock *(u64 *)(dst + off) += src`. */
  atomicAdd64(dst: Reg, off: number, src: Reg): this {
    return this.push(CLASS.STX | MODE.ATOMIC | SIZE.DW, dst, src, off, 0 /* BPF_ADD */);
  }
  /** A 64-bit constant (two instructions); `v` is taken modulo 2^64. */
  ldImm64(dst: Reg, v: bigint): this {
    const u = BigInt.asUintN(64, v);
    this.push(CLASS.LD | SIZE.DW | MODE.IMM, dst, 0, 0, Number(u & 0xffffffffn));
    return this.push(0, 0, 0, 0, Number(u >> 32n));
  }
  /** A map reference: the loader's map `index`, replaced by the loader with the map's fd (two instructions). */
  ldMap(dst: Reg, index: 0 | 1 | 2 | 3): this {
    this.push(CLASS.LD | SIZE.DW | MODE.IMM, dst, PSEUDO_MAP_FD, 0, index);
    return this.push(0, 0, 0, 0, 0);
  }
  /** 32-bit compare with an immediate, jump to `label` when it holds. */
  jmp32i(op: JmpOp, dst: Reg, imm: number, label: string): this {
    return this.push(CLASS.JMP32 | JMP_OP[op] | SRC_K, dst, 0, 0, imm, label);
  }
  /** 64-bit compare with an immediate. */
  jmpi(op: JmpOp, dst: Reg, imm: number, label: string): this {
    return this.push(CLASS.JMP | JMP_OP[op] | SRC_K, dst, 0, 0, imm, label);
  }
  /** 64-bit compare of two registers (unsigned for jgt/jge). */
  jmp(op: JmpOp, dst: Reg, src: Reg, label: string): this {
    return this.push(CLASS.JMP | JMP_OP[op] | SRC_X, dst, src, 0, 0, label);
  }
  ja(label: string): this {
    return this.push(CLASS.JMP | JMP_OP.ja, 0, 0, 0, 0, label);
  }
  call(helper: number): this {
    return this.push(CLASS.JMP | JMP_OP.call, 0, 0, 0, helper);
  }
  exit(): this {
    return this.push(CLASS.JMP | JMP_OP.exit, 0, 0, 0, 0);
  }

  get length(): number {
    return this.insns.length;
  }

  /** The program as the kernel reads it; throws on an undefined label or a jump out of range. */
  encode(): Buffer {
    const b = Buffer.alloc(this.insns.length * 8);
    this.insns.forEach((ins, i) => {
      let off = ins.off;
      if (ins.label !== undefined) {
        const at = this.labels.get(ins.label);
        if (at === undefined) throw new Error(`undefined label ${ins.label}`);
        off = at - i - 1;
        if (off < -32768 || off > 32767) throw new Error(`jump to ${ins.label} out of range`);
      }
      b.writeUInt8(ins.code, i * 8);
      b.writeUInt8(((ins.src & 0xf) << 4) | (ins.dst & 0xf), i * 8 + 1);
      b.writeInt16LE(off, i * 8 + 2);
      b.writeInt32LE(ins.imm, i * 8 + 4);
    });
    return b;
  }
}

export const HELPER = {
  mapLookupElem: 1,
  mapUpdateElem: 2,
  mapDeleteElem: 3,
  ktimeGetNs: 5,
  getCurrentPidTgid: 14,
  getCurrentUidGid: 15,
  getCurrentComm: 16,
  getCurrentCgroupId: 80,
  getCurrentTask: 35,
  sendSignal: 109,
  probeReadUser: 112,
  probeReadUserStr: 114,
  probeReadKernel: 113,
  probeReadKernelStr: 115,
  ringbufOutput: 130,
  ringbufReserve: 131,
  ringbufSubmit: 132,
} as const;
