/**
 * What the agent sends its proxy process so that the proxy's HostMap holds
 * the agent's HostTable: nothing, a delta, or the whole table in parts.
 *
 *   proxy holds (table, revision r) and the journal reaches r  -> delta changesSince(r)
 *   proxy holds nothing, another table, or r is out of reach   -> full, HOSTS_CHUNK entries a part
 *   a delta with more than HOSTS_CHUNK changes                 -> full (bounded messages)
 *
 * One address added costs the proxy one entry, whatever the table's size.
 */
import type { HostTableView } from "../../ipcache/hosts.js";
import { MembraneError } from "../../errors.js";
import { HOSTS_CHUNK, HOSTS_MAX_PARTS, type HostsDelta, type HostsFull } from "./hosts-wire.js";

/** What the running proxy process acknowledged last. */
export interface HeldHosts {
  readonly table: HostTableView;
  readonly revision: number;
}

export interface HostsPlan {
  readonly kind: "none" | "delta" | "full";
  readonly to: number;
  readonly messages: readonly (HostsDelta | HostsFull)[];
  /** Address entries the messages carry (set and deleted). */
  readonly entries: number;
}

/**
 * The messages that take the proxy from `held` to `table` at its revision now;
 * `table` undefined (an agent without a hosts table) empties the proxy's.
 */
export function planHosts(
  table: HostTableView | undefined,
  held: HeldHosts | undefined,
  forceFull = false,
): HostsPlan {
  if (!table) {
    // The proxy holds nothing from a table: nothing to undo.
    if (!held) return { kind: "none", to: 0, messages: [], entries: 0 };
    return {
      kind: "full",
      to: 0,
      messages: [{ type: "hosts-full", to: 0, part: 0, parts: 1, set: [] }],
      entries: 0,
    };
  }
  const to = table.revision;
  if (!forceFull && held?.table === table) {
    if (held.revision === to) return { kind: "none", to, messages: [], entries: 0 };
    const changes = table.changesSince(held.revision);
    if (changes && changes.size <= HOSTS_CHUNK) {
      const set: [string, number][] = [];
      const del: string[] = [];
      for (const [ip, id] of changes) {
        if (id === undefined) del.push(ip);
        else set.push([ip, id]);
      }
      return {
        kind: "delta",
        to,
        messages: [{ type: "hosts", from: held.revision, to, set, del }],
        entries: changes.size,
      };
    }
  }
  return full(table, to);
}

function full(table: HostTableView, to: number): HostsPlan {
  const parts = Math.max(1, Math.ceil(table.size / HOSTS_CHUNK));
  if (parts > HOSTS_MAX_PARTS)
    throw new MembraneError(
      "PROXY_FAILED",
      `Cannot send the L7 proxy the ipcache's addresses: ${table.size} exceed its limit of ${HOSTS_MAX_PARTS * HOSTS_CHUNK}`,
    );
  const messages: HostsFull[] = [];
  let set: [string, number][] = [];
  for (const [ip, id] of table.entries()) {
    set.push([ip, id]);
    if (set.length === HOSTS_CHUNK) {
      messages.push({ type: "hosts-full", to, part: messages.length, parts, set });
      set = [];
    }
  }
  if (set.length > 0 || messages.length === 0)
    messages.push({ type: "hosts-full", to, part: messages.length, parts, set });
  return { kind: "full", to, messages, entries: table.size };
}
