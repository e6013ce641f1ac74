/**
 * Following a prefix of the store by name: list it, bring the reader's view to
 * the list (names put, names gone removed), then watch from the list's
 * revision + 1, so that no change between the two is missed (store.ts's
 * contract). The reader keeps its own view and its own retry policy; a watch
 * error goes to `onError`, which lists again (a compacted revision, a lost
 * connection). Shared by the node registry (cluster/registry.ts) and the
 * relay's node list (relay/nodes.ts).
 */
import type { Store, Unsubscribe } from "./store.js";

export interface PrefixReader {
  /** A name (the key after the prefix) was put, with its value. */
  put(name: string, value: string): void;
  /** A name was deleted (or was gone from a new list). */
  remove(name: string): void;
  /** The names the reader holds now (those missing from a new list are removed). */
  known(): Iterable<string>;
  /** True once the reader stopped: no watch is started. */
  stopped(): boolean;
  onError(err: Error): void;
}

/** Lists `prefix` into `r`, then watches it; undefined when `r` stopped meanwhile. */
export async function followPrefix(
  kv: Pick<Store, "list" | "watch">,
  prefix: string,
  r: PrefixReader,
): Promise<Unsubscribe | undefined> {
  const { kvs, revision } = await kv.list(prefix);
  const seen = new Set<string>();
  for (const e of kvs) {
    const name = e.key.slice(prefix.length);
    seen.add(name);
    r.put(name, e.value);
  }
  for (const name of [...r.known()]) if (!seen.has(name)) r.remove(name);
  if (r.stopped()) return undefined;
  return kv.watch(
    prefix,
    revision + 1,
    (ev) => {
      const name = ev.key.slice(prefix.length);
      if (ev.type === "put") r.put(name, ev.value);
      else r.remove(name);
    },
    { onError: (err) => r.onError(err) },
  );
}
