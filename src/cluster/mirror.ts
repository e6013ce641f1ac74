/**
 * A live copy of one prefix of the cluster store: list, then watch from the
 * list's revision + 1 (no gap); when the watch fails (compaction, etcd gone
 * for long), list again (retried) and report what changed in between.
 *
 *   kv.list(prefix) --> entries --watch(rev + 1)--> entries --> onChange(keys)
 *                          ^------- re-list on error ------'
 *
 * `createRevision` is kept per key (a watched put of a new key creates it at
 * the event's revision), `modRevision` is the revision of its last put:
 * readers break ties by "smallest revision wins" (keys.ts says which).
 */
import type { Logger } from "pino";
import type { Store, Unsubscribe } from "../store/store.js";

export interface MirrorEntry {
  readonly value: string;
  readonly createRevision: number;
  /** The revision of the key's last put (a changed value counts from here). */
  readonly modRevision: number;
}

export class PrefixMirror {
  readonly entries = new Map<string, MirrorEntry>();
  private unsub: Unsubscribe | undefined;
  /** Bumped by every (re-)list: events of an older watch are ignored. */
  private gen = 0;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly kv: Store,
    readonly prefix: string,
    private readonly logger: Logger,
    private readonly onChange: (keys: ReadonlySet<string>) => void,
    private readonly retryMs = 1000,
  ) {}

  /** Lists and watches; rejects when the first list fails (the caller decides). */
  async start(): Promise<void> {
    await this.sync();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.gen++;
    if (this.retry) clearTimeout(this.retry);
    await this.unsub?.();
    this.unsub = undefined;
  }

  private async sync(): Promise<void> {
    const gen = ++this.gen;
    const old = this.unsub;
    this.unsub = undefined;
    await old?.().catch(() => undefined);
    const { kvs, revision } = await this.kv.list(this.prefix);
    if (gen !== this.gen) return;
    const changed = new Set<string>();
    const next = new Map(
      kvs.map((kv) => [
        kv.key,
        { value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision },
      ]),
    );
    for (const k of this.entries.keys()) if (!next.has(k)) changed.add(k);
    for (const [k, e] of next) if (this.entries.get(k)?.value !== e.value) changed.add(k);
    this.entries.clear();
    for (const [k, e] of next) this.entries.set(k, e);
    // Told at once: readers of `entries` see the listed state from here on.
    if (changed.size > 0) this.onChange(changed);
    const unsub = await this.kv.watch(
      this.prefix,
      revision + 1,
      (ev) => {
        if (gen !== this.gen) return;
        if (ev.type === "delete") {
          if (!this.entries.delete(ev.key)) return;
        } else {
          const was = this.entries.get(ev.key);
          this.entries.set(ev.key, {
            value: ev.value,
            createRevision: was?.createRevision ?? ev.revision,
            modRevision: ev.revision,
          });
        }
        this.onChange(new Set([ev.key]));
      },
      { onError: (err) => this.relist(gen, err) },
    );
    if (gen !== this.gen) {
      await unsub();
      return;
    }
    this.unsub = unsub;
  }

  private relist(gen: number, err: Error): void {
    if (this.stopped || gen !== this.gen) return;
    this.logger.warn({ prefix: this.prefix, err: err.message }, "cluster store watch failed; listing again");
    const again = (): void => {
      this.retry = undefined;
      if (this.stopped) return;
      this.sync().catch((e: unknown) => {
        this.logger.warn({ prefix: this.prefix, err: String(e) }, "cluster store list failed; retrying");
        if (!this.stopped) (this.retry = setTimeout(again, this.retryMs)).unref();
      });
    };
    again();
  }
}
