/**
 * The connect guard's programs: cgroup `connect4` and `connect6` BPF
 * programs generated from a policy's connect rules, with every address, port
 * and action as an immediate (no rule maps to keep in sync). Pure.
 *
 *   ConnectRule[] --compileConnect(4|6)--> instructions --native/membrane-connect-guard--> kernel
 *
 * Each rule is checked in order; the first that matches decides: Post and
 * allow, or refuse (the caller's connect() fails with EPERM before any packet
 * is built), optionally with a kill sent by the loader. An event (80 bytes,
 * layout below, read by the loader from a ring buffer) is written unless the
 * rule is NoPost; when the ring buffer is full the event is counted in the
 * lost map and the verdict stands (fail closed).
 *
 *   event: 0 flags (rule index | DENY 1<<16 | KILL 1<<17), 4 family (4|6), 8 pid_tgid, 16 uid_gid,
 *          24 ktime (CLOCK_MONOTONIC ns), 32 cgroup id, 40 port (host order), 44 address (4 or 16 bytes,
 *          network order), 64 comm (16 bytes)
 */
import type { Cidr } from "../policy/types.js";
import { Asm, HELPER, type Reg } from "./bpf-asm.js";

export type ConnectMatch =
  | { readonly kind: "daddr"; readonly not: boolean; readonly cidrs: readonly Cidr[] }
  | { readonly kind: "dport"; readonly not: boolean; readonly ports: readonly number[] }
  | { readonly kind: "family"; readonly families: readonly (4 | 6)[] };

export interface ConnectRule {
  /** tcp_connect: stream sockets only; security_socket_connect: every connect(). */
  readonly tcpOnly: boolean;
  /** ANDed. */
  readonly matches: readonly ConnectMatch[];
  readonly post: boolean;
  readonly deny: boolean;
  readonly kill: boolean;
}

export const FLAG_DENY = 0x10000;
export const FLAG_KILL = 0x20000;
export const EVENT_SIZE = 80;
/** Rules per policy (the rule index travels in 16 bits; programs stay far below the verifier's limits). */
export const MAX_CONNECT_RULES = 256;

// struct bpf_sock_addr
const CTX_IP4 = 4;
const CTX_IP6 = 8;
const CTX_PORT = 24;
const CTX_PROTOCOL = 36;
const IPPROTO_TCP = 6;

/** Mask of word `i` of a prefix. */
function wordMask(prefix: number, i: number): number {
  const bits = Math.max(0, Math.min(32, prefix - 32 * i));
  return bits === 0 ? 0 : bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

/** Jumps to `miss` unless the destination address is inside `c` (r2 is scratch). */
function cidrCheck(a: Asm, family: 4 | 6, c: Cidr, miss: string): void {
  c.words.forEach((net, i) => {
    const mask = wordMask(c.prefix, i);
    if (mask === 0) return;
    a.ldx("W", 2, 6, family === 4 ? CTX_IP4 : CTX_IP6 + 4 * i).be(2, 32);
    if (mask !== 0xffffffff) a.and32i(2, mask);
    a.jmp32i("jne", 2, (net & mask) >>> 0, miss);
  });
}

function compileMatch(a: Asm, family: 4 | 6, m: ConnectMatch, next: string): void {
  if (m.kind === "family") return; // decided per program (compileConnect)
  if (m.kind === "dport") {
    if (m.not) {
      for (const p of m.ports) a.jmp32i("jeq", 8, p, next);
      return;
    }
    const ok = a.fresh("port_ok");
    for (const p of m.ports) a.jmp32i("jeq", 8, p, ok);
    a.ja(next).label(ok);
    return;
  }
  const cidrs = m.cidrs.filter((c) => c.family === family);
  if (m.not) {
    // Inside any of them: the match fails.
    for (const c of cidrs) {
      const outside = a.fresh("outside");
      cidrCheck(a, family, c, outside);
      a.ja(next).label(outside);
    }
    return;
  }
  const ok = a.fresh("addr_ok");
  for (const c of cidrs) {
    const miss = a.fresh("addr_miss");
    cidrCheck(a, family, c, miss);
    a.ja(ok).label(miss);
  }
  a.ja(next).label(ok);
}

/** Writes the event from r9 (flags), r8 (port) and the context, then returns the verdict in r9. */
function emit(a: Asm, family: 4 | 6): void {
  for (let off = -80; off < 0; off += 8) a.st("DW", 10, off, 0);
  a.stx("W", 10, -80, 9).st("W", 10, -76, family);
  const calls: [number, number][] = [
    [HELPER.getCurrentPidTgid, -72],
    [HELPER.getCurrentUidGid, -64],
    [HELPER.ktimeGetNs, -56],
    [HELPER.getCurrentCgroupId, -48],
  ];
  for (const [helper, off] of calls) a.call(helper).stx("DW", 10, off, 0);
  a.stx("W", 10, -40, 8);
  const words = family === 4 ? [CTX_IP4] : [0, 1, 2, 3].map((i) => CTX_IP6 + 4 * i);
  words.forEach((ctxOff, i) => a.ldx("W", 2, 6, ctxOff).stx("W", 10, -36 + 4 * i, 2));
  a.mov64(1, 10).add64i(1, -16).mov64i(2, 16).call(HELPER.getCurrentComm);
  const done = a.fresh("done");
  a.ldMap(1, 0).mov64(2, 10).add64i(2, -80).mov64i(3, EVENT_SIZE).mov64i(4, 0).call(HELPER.ringbufOutput);
  a.jmpi("jeq", 0, 0, done);
  // Lost: counted, the verdict stands.
  a.st("W", 10, -84, 0).ldMap(1, 1).mov64(2, 10).add64i(2, -84).call(HELPER.mapLookupElem);
  a.jmpi("jeq", 0, 0, done)
    .mov64i(1, 1)
    .atomicAdd64(0, 0, 1 as Reg);
  a.label(done);
  const deny = a.fresh("deny");
  a.jmp32i("jset", 9, FLAG_DENY, deny).mov64i(0, 1).exit();
  a.label(deny).mov64i(0, 0).exit();
}

/** The program for one family; rules beyond MAX_CONNECT_RULES are the caller's error. */
export function compileConnect(rules: readonly ConnectRule[], family: 4 | 6): Buffer {
  if (rules.length > MAX_CONNECT_RULES) throw new Error(`more than ${MAX_CONNECT_RULES} connect rules`);
  const a = new Asm();
  a.mov64(6, 1).ldx("W", 8, 6, CTX_PORT).be(8, 16);
  let anyPost = false;
  rules.forEach((r, i) => {
    // A rule that names only addresses of the other family cannot match here (and unreachable
    // instructions are refused by the verifier): it is left out of this family's program.
    const other = (m: ConnectMatch): boolean =>
      m.kind === "family"
        ? !m.families.includes(family)
        : m.kind === "daddr" && !m.not && !m.cidrs.some((c) => c.family === family);
    if (r.matches.some(other)) return;
    const next = a.fresh("next");
    if (r.tcpOnly) a.ldx("W", 2, 6, CTX_PROTOCOL).jmp32i("jne", 2, IPPROTO_TCP, next);
    for (const m of r.matches) compileMatch(a, family, m, next);
    // A kill is sent by the loader on the event, so a killing rule always writes one.
    if (r.post || r.kill) {
      anyPost = true;
      a.mov64i(9, i | (r.deny ? FLAG_DENY : 0) | (r.kill ? FLAG_KILL : 0)).ja("emit");
    } else {
      a.mov64i(0, r.deny ? 0 : 1).exit();
    }
    a.label(next);
  });
  a.mov64i(0, 1).exit();
  if (anyPost) emit(a.label("emit"), family);
  return a.encode();
}
