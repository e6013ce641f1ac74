/**
 * Bursts coalesced: `run()` starts `once` now, or, when it is already running, asks for one more
 * pass after it (however many callers asked meanwhile), and resolves when the passes are done.
 * Used by the parts that reconcile from a watched view (ipcache publishing, peer routes).
 */
export class Coalescer {
  private current: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly once: () => Promise<void>,
    private readonly stopped: () => boolean,
  ) {}

  run(): Promise<void> {
    if (this.stopped()) return Promise.resolve();
    if (this.current) {
      this.again = true;
      return this.current;
    }
    this.current = (async () => {
      do {
        this.again = false;
        await this.once();
      } while (this.again && !this.stopped());
    })().finally(() => (this.current = undefined));
    return this.current;
  }

  /** The pass in progress, if any (to wait for it on stop). */
  get running(): Promise<void> | undefined {
    return this.current;
  }
}
