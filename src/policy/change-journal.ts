/**
 * ChangeJournal: which keys changed since a revision, for consumers that
 * take what changed instead of walking everything (the engine journals the
 * local endpoints whose record or computed policy changed; DesiredBuilder
 * rebuilds only those).
 *
 *   record(key) --> revision++, journal += key
 *   consumer at revision r: changesSince(r) -> Set<key>
 *                           undefined when the journal no longer reaches r: take everything
 *
 * Pure data structure, bounded: past `max` entries the older half is dropped.
 */
export class ChangeJournal {
  private rev = 0;
  /** Keys changed at revisions base+1 .. rev, in order. */
  private journal: string[] = [];
  private base = 0;

  constructor(private readonly max = 65_536) {}

  get revision(): number {
    return this.rev;
  }

  record(key: string): void {
    this.rev++;
    this.journal.push(key);
    if (this.journal.length > this.max) {
      const drop = this.journal.length - Math.floor(this.max / 2);
      this.journal = this.journal.slice(drop);
      this.base += drop;
    }
  }

  /** Keys changed after `revision`; undefined when `revision` is not reachable (older, or not one of ours). */
  changesSince(revision: number): Set<string> | undefined {
    if (!Number.isInteger(revision) || revision > this.rev || revision < this.base) return undefined;
    const out = new Set<string>();
    for (let i = revision - this.base; i < this.journal.length; i++) out.add(this.journal[i] as string);
    return out;
  }
}
