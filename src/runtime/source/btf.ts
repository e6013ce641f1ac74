/**
 * Kernel struct layouts from the running kernel's BTF (/sys/kernel/btf/vmlinux):
 * the byte offsets the native event programs (native-prog.ts) read at, so one
 * build serves every kernel that has BTF (this is what CO-RE relocations do in
 * a clang-built object; here, the offsets are looked up before the program is
 * generated). Pure over the bytes it is given; hostile-input safe (a bound
 * check on every read, errors instead of out-of-range reads).
 *
 *   vmlinux BTF bytes --parseBtf--> Btf --offsetOf("task_struct", "fs.pwd")--> {offset, size}
 *
 * Only what we need is decoded: names, structs/unions with their members,
 * and the modifiers (typedef, const, volatile, restrict, type tag) between a
 * member and its struct. Anonymous struct/union members are searched through,
 * as C does.
 */
import { readFileSync } from "node:fs";
import { MembraneError } from "../../errors.js";

const MAGIC = 0xeb9f;
const KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

interface Member {
  /** Offset of the name in the string section (0: anonymous). */
  readonly name: number;
  readonly type: number;
  /** Bit offset from the start of the struct. */
  readonly bitOffset: number;
}

interface Type {
  readonly kind: number;
  /** Offset of the name in the string section (0: anonymous). */
  readonly name: number;
  /** Size in bytes (INT, STRUCT, UNION, ENUM) or the referenced type id (PTR, TYPEDEF, modifiers). */
  readonly sizeOrType: number;
  /** STRUCT/UNION: where its members start in the bytes, and how many (decoded when asked). */
  readonly members?: { readonly at: number; readonly n: number; readonly kflag: boolean };
  /** ARRAY: element type and count. */
  readonly array?: { readonly elem: number; readonly n: number };
}

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}

/** What the program generators ask of BTF: the parsed kernel BTF, or the offsets cache (btf-cache.ts). */
export interface BtfLookup {
  /** Byte offset and size of `path` (dot-separated, embedded members only) in struct `struct`. */
  offsetOf(struct: string, path: string): FieldLayout;
  /** sizeof(struct `struct`). */
  structSize(struct: string): number;
}

const err = (why: string): MembraneError =>
  new MembraneError("RUNTIME_BTF_INVALID", `Cannot read the kernel's BTF: ${why}`, {
    hint: "the native event source needs /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF); the bpftrace source is used instead",
  });

export class Btf implements BtfLookup {
  private readonly byName = new Map<string, number>();

  constructor(
    private readonly types: readonly (Type | undefined)[],
    private readonly str: (off: number) => string,
    private readonly bytes: Buffer,
    private readonly strLen: number,
  ) {
    types.forEach((t, id) => {
      if (t && (t.kind === KIND.STRUCT || t.kind === KIND.UNION) && t.name !== 0) {
        const name = str(t.name);
        if (!this.byName.has(name)) this.byName.set(name, id);
      }
    });
  }

  /** Follows typedefs and modifiers to the type they name. */
  private resolve(id: number): Type {
    for (let hops = 0; hops < 32; hops++) {
      const t = this.types[id];
      if (!t) throw err(`type ${id} does not exist`);
      if (
        t.kind === KIND.TYPEDEF ||
        t.kind === KIND.VOLATILE ||
        t.kind === KIND.CONST ||
        t.kind === KIND.RESTRICT ||
        t.kind === KIND.TYPE_TAG
      ) {
        id = t.sizeOrType;
        continue;
      }
      return t;
    }
    throw err(`type ${id}: a chain of typedefs too long`);
  }

  private sizeOf(id: number): number {
    const t = this.resolve(id);
    if (t.kind === KIND.PTR) return 8;
    if (t.kind === KIND.ARRAY && t.array) return this.sizeOf(t.array.elem) * t.array.n;
    return t.sizeOrType;
  }

  private membersOf(t: Type): Member[] {
    const out: Member[] = [];
    if (!t.members) return out;
    const b = this.bytes;
    for (let i = 0, at = t.members.at; i < t.members.n; i++, at += 12) {
      const name = b.readUInt32LE(at);
      if (name >= this.strLen) throw err(`name offset ${name} out of range`);
      const off = b.readUInt32LE(at + 8);
      out.push({ name, type: b.readUInt32LE(at + 4), bitOffset: t.members.kflag ? off & 0xffffff : off });
    }
    return out;
  }

  /** A named member, searched through anonymous struct/union members; bit offset and type. */
  private member(t: Type, name: string, depth = 0): { bitOffset: number; type: number } | undefined {
    for (const m of this.membersOf(t)) {
      if (m.name !== 0 && this.str(m.name) === name) return { bitOffset: m.bitOffset, type: m.type };
      if (m.name === 0 && depth < 8) {
        const inner = this.resolve(m.type);
        const found = this.member(inner, name, depth + 1);
        if (found) return { bitOffset: m.bitOffset + found.bitOffset, type: found.type };
      }
    }
    return undefined;
  }

  structSize(struct: string): number {
    const id = this.byName.get(struct);
    if (id === undefined) throw err(`no struct ${struct}`);
    return this.sizeOf(id);
  }

  offsetOf(struct: string, path: string): FieldLayout {
    const id = this.byName.get(struct);
    if (id === undefined) throw err(`no struct ${struct}`);
    let t = this.resolve(id);
    let bits = 0;
    let type = id;
    for (const part of path.split(".")) {
      const m = this.member(t, part);
      if (!m) throw err(`struct ${struct} has no member ${path}`);
      bits += m.bitOffset;
      type = m.type;
      t = this.resolve(m.type);
    }
    if (bits % 8 !== 0) throw err(`${struct}.${path} is a bit field`);
    return { offset: bits / 8, size: this.sizeOf(type) };
  }
}

/** Decodes BTF bytes (the kernel's or hostile ones). */
export function parseBtf(b: Buffer): Btf {
  if (b.length < 24) throw err("shorter than its header");
  if (b.readUInt16LE(0) !== MAGIC) throw err("bad magic (not little-endian BTF)");
  const hdrLen = b.readUInt32LE(4);
  const [typeOff, typeLen, strOff, strLen] = [8, 12, 16, 20].map((o) => b.readUInt32LE(o)) as [
    number,
    number,
    number,
    number,
  ];
  const tStart = hdrLen + typeOff;
  const sStart = hdrLen + strOff;
  if (hdrLen < 24 || tStart + typeLen > b.length || sStart + strLen > b.length)
    throw err("sections out of range");
  const str = (off: number): string => {
    if (off >= strLen) throw err(`name offset ${off} out of range`);
    const end = b.indexOf(0, sStart + off);
    if (end < 0 || end >= sStart + strLen) throw err("unterminated name");
    return b.toString("latin1", sStart + off, end);
  };
  const types: (Type | undefined)[] = [undefined]; // id 0 is void
  let at = tStart;
  const end = tStart + typeLen;
  const need = (n: number): void => {
    if (at + n > end) throw err("a type runs past its section");
  };
  while (at < end) {
    need(12);
    const nameOff = b.readUInt32LE(at);
    const info = b.readUInt32LE(at + 4);
    const sizeOrType = b.readUInt32LE(at + 8);
    at += 12;
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kflag = info >>> 31 === 1;
    if (nameOff !== 0 && nameOff >= strLen) throw err(`name offset ${nameOff} out of range`);
    const name = nameOff;
    switch (kind) {
      case KIND.INT:
      case KIND.VAR:
      case KIND.DECL_TAG:
        need(4);
        at += 4;
        types.push({ kind, name, sizeOrType });
        break;
      case KIND.ARRAY: {
        need(12);
        const array = { elem: b.readUInt32LE(at), n: b.readUInt32LE(at + 8) };
        at += 12;
        types.push({ kind, name, sizeOrType, array });
        break;
      }
      case KIND.STRUCT:
      case KIND.UNION: {
        need(12 * vlen);
        const members = { at, n: vlen, kflag };
        at += 12 * vlen;
        types.push({ kind, name, sizeOrType, members });
        break;
      }
      case KIND.ENUM:
      case KIND.FUNC_PROTO:
        need(8 * vlen);
        at += 8 * vlen;
        types.push({ kind, name, sizeOrType });
        break;
      case KIND.ENUM64:
      case KIND.DATASEC:
        need(12 * vlen);
        at += 12 * vlen;
        types.push({ kind, name, sizeOrType });
        break;
      case KIND.PTR:
      case KIND.FWD:
      case KIND.TYPEDEF:
      case KIND.VOLATILE:
      case KIND.CONST:
      case KIND.RESTRICT:
      case KIND.FUNC:
      case KIND.FLOAT:
      case KIND.TYPE_TAG:
        types.push({ kind, name, sizeOrType });
        break;
      default:
        throw err(`unknown kind ${kind} at byte ${at - 12 - tStart} of the type section`);
    }
  }
  return new Btf(types, str, b, strLen);
}

/** The running kernel's BTF. */
export function kernelBtf(path = "/sys/kernel/btf/vmlinux"): Btf {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw err(`${path}: ${(e as Error).message}`);
  }
  return parseBtf(bytes);
}
