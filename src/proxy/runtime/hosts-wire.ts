/**
 * The proxy's copy of the ipcache's exact addresses on the wire: a full
 * table in parts, or a delta between two revisions of the agent's HostTable.
 *
 *   agent --{type:"hosts-full", to, part, parts, set}--> proxy   (parts 0..parts-1, in order)
 *         --{type:"hosts", from, to, set, del}-------->          (only if the proxy holds `from`)
 *         <--{type:"hosts-ack", to, ok, error?}--------          (after a delta, after the last part,
 *                                                                   or at once for a malformed message)
 *
 * Every message is bounded (HOSTS_CHUNK entries, HOSTS_MAX_PARTS parts) and
 * checked entry by entry: an address that is not a plain IPv4/IPv6 address
 * or an identity out of range refuses the whole table: the proxy answers at
 * once with `error` naming the part and entry, keeps the table it held, and
 * the agent does not send that content again. Addresses travel as text and are keyed by
 * hostKey, which is cheap (a full table of 50,000 is keyed without bigint
 * parsing) and equal for equal addresses whatever their spelling.
 */
import { isIPv4 } from "node:net";
import { addressBytes } from "../../abi/ctnetlink-address.js";

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

/** IPv4-mapped IPv6 (`::ffff:a.b.c.d`): its key stays apart from the IPv4 address's. */
const MAPPED = "00000000000000000000ffff";

/**
 * The map key of an address: a canonical IPv4 text is itself; an IPv6
 * address is its 32 hex digits (so `fd00::1` and `FD00:0::0001` are one
 * key). undefined when the text is not a plain address (no zone, no prefix).
 * The parsing is conntrack's (addressBytes); IPv4 texts, most of a table,
 * skip it.
 */
export function hostKey(s: string): string | undefined {
  if (s.length > 45 || s.includes("%")) return undefined;
  if (isIPv4(s)) return s;
  const a = addressBytes(s);
  if (a === undefined) return undefined;
  const hex = Buffer.from(a.bytes).toString("hex");
  return a.family === 6 ? hex : MAPPED + hex;
}

type Obj = Record<string, unknown>;
const isRev = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isIdentity = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;

/** A parsed message, or why it is refused (names the field and the entry; bounded). */
export type HostsParse<T> =
  { readonly msg: T; readonly why?: never } | { readonly why: string; readonly msg?: never };

/** A value for a refusal text: short, whatever it is. */
function shown(v: unknown): string {
  const t = typeof v === "string" ? JSON.stringify(v.slice(0, 64)) : String(JSON.stringify(v) ?? typeof v);
  return t.length > 80 ? `${t.slice(0, 80)}...` : t;
}

/** Keyed entries, or why the list is refused (too long, or the first malformed entry). */
function entriesFrom(v: unknown, max: number): [string, number][] | string {
  if (!Array.isArray(v)) return "set is not a list";
  if (v.length > max) return `set has ${v.length} entries, over the limit of ${max}`;
  const out: [string, number][] = [];
  for (let i = 0; i < v.length; i++) {
    const e: unknown = v[i];
    if (!Array.isArray(e) || e.length !== 2) return `set[${i}] is not an [address, identity] pair`;
    const [ip, id] = e as [unknown, unknown];
    const k = typeof ip === "string" ? hostKey(ip) : undefined;
    if (k === undefined) return `set[${i}] address ${shown(ip)} is not a plain IPv4/IPv6 address`;
    if (!isIdentity(id)) return `set[${i}] identity ${shown(id)} is not an identity (0..2^32-1)`;
    out.push([k, id]);
  }
  return out;
}

/** A delta with its addresses keyed (hostKey), or why it is refused (malformed, over HOSTS_CHUNK entries). */
export function parseHostsDelta(m: Obj): HostsParse<HostsDelta> {
  if (!isRev(m.from) || !isRev(m.to) || m.to < m.from)
    return { why: `revisions from ${shown(m.from)} to ${shown(m.to)} are not a range` };
  if (!Array.isArray(m.set) || !Array.isArray(m.del)) return { why: "set or del is not a list" };
  if (m.set.length + m.del.length > HOSTS_CHUNK)
    return { why: `${m.set.length + m.del.length} changes, over the limit of ${HOSTS_CHUNK}` };
  const set = entriesFrom(m.set, HOSTS_CHUNK);
  if (typeof set === "string") return { why: set };
  const del: string[] = [];
  for (let i = 0; i < m.del.length; i++) {
    const ip: unknown = m.del[i];
    const k = typeof ip === "string" ? hostKey(ip) : undefined;
    if (k === undefined) return { why: `del[${i}] address ${shown(ip)} is not a plain IPv4/IPv6 address` };
    del.push(k);
  }
  return { msg: { type: "hosts", from: m.from, to: m.to, set, del } };
}

/** One part of a full table, keyed, or why it is refused (malformed or out of bounds). */
export function parseHostsFull(m: Obj): HostsParse<HostsFull> {
  if (!isRev(m.to) || !isRev(m.part) || !isRev(m.parts))
    return { why: `to ${shown(m.to)}, part ${shown(m.part)}, parts ${shown(m.parts)} are not counts` };
  if (m.parts < 1 || m.parts > HOSTS_MAX_PARTS || m.part >= m.parts)
    return { why: `part ${m.part} of ${m.parts} is out of bounds (1..${HOSTS_MAX_PARTS} parts)` };
  const set = entriesFrom(m.set, HOSTS_CHUNK);
  if (typeof set === "string") return { why: `part ${m.part} of ${m.parts}: ${set}` };
  return { msg: { type: "hosts-full", to: m.to, part: m.part, parts: m.parts, set } };
}

/** A delta with its addresses keyed (hostKey); undefined when malformed or over HOSTS_CHUNK entries. */
export function hostsDeltaFrom(m: Obj): HostsDelta | undefined {
  return parseHostsDelta(m).msg;
}

/** One part of a full table, keyed; undefined when malformed or out of bounds. */
export function hostsFullFrom(m: Obj): HostsFull | undefined {
  return parseHostsFull(m).msg;
}

/**
 * Why a message of hosts type was refused, with the revision to answer
 * under; undefined when it is not a hosts message, is well formed, or has no
 * readable `to` (the agent always sends one: nothing to answer).
 */
export function hostsRefusal(
  m: unknown,
): { type: "hosts" | "hosts-full"; to: number; why: string } | undefined {
  if (typeof m !== "object" || m === null) return undefined;
  const o = m as Obj;
  if ((o.type !== "hosts" && o.type !== "hosts-full") || !isRev(o.to)) return undefined;
  const why = (o.type === "hosts" ? parseHostsDelta(o) : parseHostsFull(o)).why;
  return why === undefined ? undefined : { type: o.type, to: o.to, why };
}
