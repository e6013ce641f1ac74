/**
 * The proxy process's copy of the ipcache's exact addresses (endpoints of
 * every node, nodes): address -> identity at one revision of the agent's
 * HostTable, kept up to date by deltas.
 *
 *   hosts-full parts 0..n-1 --> staging map --(last part, all in order)--> swapped in whole, revision = to
 *   hosts delta {from, to}  --> applied in place when from === revision, else refused
 *
 * A full table is built apart and swapped in at once, so a lookup never sees
 * half a table. Anything out of order (a part missing, a delta from another
 * revision) is refused: the agent then resends the whole table. A malformed
 * message is refused at once with the reason (refuse): that content is never
 * taken, and the agent does not send it again.
 */
import { hostKey, type HostsDelta, type HostsFull } from "./hosts-wire.js";

export interface HostsReply {
  readonly to: number;
  readonly ok: boolean;
  /** Set when the content itself is refused (a malformed part or delta): sending it again will not help. */
  readonly error?: string;
}

export class HostMap {
  private map = new Map<string, number>();
  /** The agent's revision this map holds; undefined until a full table arrived. */
  private rev: number | undefined;
  private staging:
    | {
        to: number;
        next: number;
        parts: number;
        map: Map<string, number>;
        ok: boolean;
        /** Refused already (a malformed part): the rest of its parts are dropped without a reply. */
        answered?: boolean;
      }
    | undefined;

  get revision(): number | undefined {
    return this.rev;
  }

  get size(): number {
    return this.map.size;
  }

  /** The identity of an exact address (any spelling), or undefined. */
  get(address: string): number | undefined {
    const k = hostKey(address);
    return k === undefined ? undefined : this.map.get(k);
  }

  /** A part of a full table; a reply after the last part (ok: every part arrived, in order). */
  full(m: HostsFull): HostsReply | undefined {
    if (m.part === 0) this.staging = { to: m.to, next: 0, parts: m.parts, map: new Map(), ok: true };
    const s = this.staging;
    if (!s) return m.part === m.parts - 1 ? { to: m.to, ok: false } : undefined;
    if (m.part !== s.next || m.to !== s.to || m.parts !== s.parts) s.ok = false;
    s.next = m.part + 1;
    if (s.ok) for (const [k, id] of m.set) s.map.set(k, id);
    if (m.part !== m.parts - 1) return undefined;
    this.staging = undefined;
    if (s.answered && s.to === m.to) return undefined;
    if (!s.ok) return { to: m.to, ok: false };
    this.map = s.map;
    this.rev = m.to;
    return { to: m.to, ok: true };
  }

  /**
   * A hosts message that arrived malformed (`why` names the part and entry):
   * refused at once, whatever part it was, so the agent need not wait for a
   * reply that would never come. A table being received is dropped (its
   * later parts get no second reply); the table held stays.
   */
  refuse(type: "hosts" | "hosts-full", to: number, why: string): HostsReply {
    if (type === "hosts-full")
      this.staging = { to, next: -1, parts: 0, map: new Map(), ok: false, answered: true };
    return { to, ok: false, error: why };
  }

  /** A delta: applied only on top of the revision it was computed from. */
  delta(m: HostsDelta): HostsReply {
    if (this.rev === undefined || m.from !== this.rev) return { to: m.to, ok: false };
    for (const k of m.del) this.map.delete(k);
    for (const [k, id] of m.set) this.map.set(k, id);
    this.rev = m.to;
    return { to: m.to, ok: true };
  }
}
