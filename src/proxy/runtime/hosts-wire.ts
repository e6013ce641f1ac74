/**
 * The proxy's copy of the ipcache's exact addresses on the wire: a full
 * table in parts, or a delta between two revisions of the agent's HostTable.
 *
 *   agent --{type:"hosts-full", to, part, parts, set}--> proxy   (parts 0..parts-1, in order)
 *         --{type:"hosts", from, to, set, del}-------->          (only if the proxy holds `from`)
 *         <--{type:"hosts-ack", to, ok}----------------          (after a delta, after the last part)
 *
 * Every message is bounded (HOSTS_CHUNK entries, HOSTS_MAX_PARTS parts) and
 * checked entry by entry: an address that is not a plain IPv4/IPv6 address
 * or an identity out of range drops the whole message (the proxy refuses it
 * and the agent resends in full). Addresses travel as text and are keyed by
 * hostKey, which is cheap (a full table of 50,000 is keyed without bigint
 * parsing) and equal for equal addresses whatever their spelling.
 */
import { isIPv6 } from "node:net";

/** Entries per message: no single IPC message is huge. */
export const HOSTS_CHUNK = 10_000;
/** Parts of one full table (a million addresses). */
export const HOSTS_MAX_PARTS = 100;

export interface HostsDelta {
  readonly type: "hosts";
  readonly from: number;
  readonly to: number;
  readonly set: readonly (readonly [string, number])[];
  readonly del: readonly string[];
}

export interface HostsFull {
  readonly type: "hosts-full";
  readonly to: number;
  readonly part: number;
  readonly parts: number;
  readonly set: readonly (readonly [string, number])[];
}

const V4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * The map key of an address: a canonical IPv4 text is itself; an IPv6
 * address is its 32 hex digits (so `fd00::1` and `FD00:0::0001` are one
 * key). undefined when the text is not a plain address (no zone, no prefix).
 */
export function hostKey(s: string): string | undefined {
  if (s.length > 45) return undefined;
  if (V4.test(s)) return s;
  if (s.includes("%") || !isIPv6(s)) return undefined;
  let t = s;
  const colon = t.lastIndexOf(":");
  const tail = t.slice(colon + 1);
  if (tail.includes(".")) {
    // An embedded IPv4 tail (::ffff:1.2.3.4) is two groups.
    if (!V4.test(tail)) return undefined;
    const o = tail.split(".").map(Number) as [number, number, number, number];
    t = `${t.slice(0, colon + 1)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const gap = t.indexOf("::");
  const split = (x: string): string[] => (x === "" ? [] : x.split(":"));
  const head = split(gap < 0 ? t : t.slice(0, gap));
  const rest = gap < 0 ? [] : split(t.slice(gap + 2));
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (gap < 0 && fill !== 0)) return undefined;
  const groups = [...head, ...Array<string>(fill).fill("0"), ...rest];
  return groups.map((g) => g.toLowerCase().padStart(4, "0")).join("");
}

type Obj = Record<string, unknown>;
const isRev = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isIdentity = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

/** Keyed entries, or undefined when the list is too long or one entry is malformed. */
function entriesFrom(v: unknown, max: number): [string, number][] | undefined {
  if (!Array.isArray(v) || v.length > max) return undefined;
  const out: [string, number][] = [];
  for (const e of v as unknown[]) {
    if (!Array.isArray(e) || e.length !== 2) return undefined;
    const [ip, id] = e as [unknown, unknown];
    const k = typeof ip === "string" ? hostKey(ip) : undefined;
    if (k === undefined || !isIdentity(id)) return undefined;
    out.push([k, id]);
  }
  return out;
}

/** A delta with its addresses keyed (hostKey); undefined when malformed or over HOSTS_CHUNK entries. */
export function hostsDeltaFrom(m: Obj): HostsDelta | undefined {
  if (!isRev(m.from) || !isRev(m.to) || m.to < m.from) return undefined;
  if (!Array.isArray(m.set) || !Array.isArray(m.del) || m.set.length + m.del.length > HOSTS_CHUNK)
    return undefined;
  const set = entriesFrom(m.set, HOSTS_CHUNK);
  if (!set) return undefined;
  const del: string[] = [];
  for (const ip of m.del as unknown[]) {
    const k = typeof ip === "string" ? hostKey(ip) : undefined;
    if (k === undefined) return undefined;
    del.push(k);
  }
  return { type: "hosts", from: m.from, to: m.to, set, del };
}

/** One part of a full table, keyed; undefined when malformed or out of bounds. */
export function hostsFullFrom(m: Obj): HostsFull | undefined {
  if (!isRev(m.to) || !isRev(m.part) || !isRev(m.parts)) return undefined;
  if (m.parts < 1 || m.parts > HOSTS_MAX_PARTS || m.part >= m.parts) return undefined;
  const set = entriesFrom(m.set, HOSTS_CHUNK);
  return set ? { type: "hosts-full", to: m.to, part: m.part, parts: m.parts, set } : undefined;
}
