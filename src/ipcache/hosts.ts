/**
 * The exact (host) addresses of the ipcache: endpoint and node addresses ->
 * identity, with a revision and a short journal so that consumers (the
 * datapath, the proxy) take what changed instead of the whole table.
 *
 *   set/delete --> map (canonical address text -> identity), revision++, journal += address
 *   consumer at revision r: changesSince(r) -> {address -> identity | undefined (gone)}
 *                           undefined when the journal no longer reaches r: compare whole tables
 *
 * A cluster node holds tens of thousands of these and they change one at a
 * time; one change must cost one entry downstream, not a pass over all of them.
 * Pure data structure; the IPCache writes canonical address text (addrString),
 * so that equal addresses are equal keys.
 */
/** What a consumer reads (the datapath and the proxy snapshot never write). */
export interface HostTableView {
  readonly revision: number;
  readonly size: number;
  get(ip: string): number | undefined;
  entries(): IterableIterator<[string, number]>;
  changesSince(revision: number): Map<string, number | undefined> | undefined;
}

/** Journal entries kept; a consumer further behind compares whole tables. */
const JOURNAL_MAX = 65_536;

export class HostTable implements HostTableView {
  private readonly map = new Map<string, number>();
  private rev = 0;
  /** Addresses changed at revisions journalBase+1 .. rev, in order. */
  private journal: string[] = [];
  private journalBase = 0;

  get revision(): number {
    return this.rev;
  }

  get size(): number {
    return this.map.size;
  }

  get(ip: string): number | undefined {
    return this.map.get(ip);
  }

  entries(): IterableIterator<[string, number]> {
    return this.map.entries();
  }

  /** Sets an address (canonical text) to an identity; no revision when nothing changes. */
  set(ip: string, identity: number): void {
    if (this.map.get(ip) === identity) return;
    this.map.set(ip, identity);
    this.record(ip);
  }

  delete(ip: string): void {
    if (!this.map.delete(ip)) return;
    this.record(ip);
  }

  private record(ip: string): void {
    this.rev++;
    this.journal.push(ip);
    if (this.journal.length > JOURNAL_MAX) {
      const drop = this.journal.length - JOURNAL_MAX / 2;
      this.journal = this.journal.slice(drop);
      this.journalBase += drop;
    }
  }

  /**
   * Every address whose identity may differ from what it was at `revision`,
   * with its identity now (undefined = no longer in the table); undefined when
   * `revision` is older than the journal (or not one of this table's).
   */
  changesSince(revision: number): Map<string, number | undefined> | undefined {
    if (revision > this.rev || revision < this.journalBase) return undefined;
    const out = new Map<string, number | undefined>();
    for (let i = revision - this.journalBase; i < this.journal.length; i++) {
      const ip = this.journal[i] as string;
      out.set(ip, this.map.get(ip));
    }
    return out;
  }
}
