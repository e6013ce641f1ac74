/**
 * The endpoints as pods (namespace, labels, addresses, named ports) with a log of which
 * changed, so that a reader (the services' backends, lb/) follows the changes instead of
 * scanning every endpoint of the cluster after each one. Pure; fed by EndpointTable.
 *
 *   EndpointTable set/delete (local "l:ns/name", remote "r:ip") --note--> log
 *   reader: since(cursor) -> keys changed after it (undefined: too far behind, read all())
 */

export interface PodView {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ips: readonly string[];
  readonly namedPorts?: readonly {
    readonly name: string;
    readonly port: number;
    readonly protocol: string;
  }[];
}

export interface PodSource {
  /** The cursor after the newest change. */
  readonly head: number;
  /** Keys changed after `cursor` (repeats possible), or undefined when the log no longer reaches back. */
  since(cursor: number): string[] | undefined;
  /** The pod now under `key`, or undefined when it is gone. */
  get(key: string): PodView | undefined;
  /** Every pod now, with its key. */
  all(): Iterable<[string, PodView]>;
}

export class PodJournal {
  private log: string[] = [];
  /** The cursor of log[0]. */
  private base = 0;

  /** Keeps at most about `cap` keys (a reader further behind reads all()). */
  constructor(private readonly cap = 65_536) {}

  get head(): number {
    return this.base + this.log.length;
  }

  note(key: string): void {
    this.log.push(key);
    if (this.log.length > 2 * this.cap) {
      const drop = this.log.length - this.cap;
      this.log = this.log.slice(drop);
      this.base += drop;
    }
  }

  since(cursor: number): string[] | undefined {
    if (cursor < this.base || cursor > this.head) return undefined;
    return this.log.slice(cursor - this.base);
  }
}
