/**
 * Waiting for a condition in tests, one way for every file.
 *
 * The bound is a safety net that turns a hang into a named failure, never a measure of speed (a timed test is a
 * flake): it is generous, and the value it returns is for a report line, not for an assertion.
 */

export interface UntilOptions {
  /** Give up after this many milliseconds (default 30,000). */
  readonly ms?: number;
  /** Poll every this many milliseconds (default 50). */
  readonly every?: number;
  /** Said after `what` when it gives up (e.g. the state seen last). */
  readonly detail?: () => string;
  /** A throwing check counts as "not yet" instead of failing at once. */
  readonly retryErrors?: boolean;
}

/** Polls `ok` until it holds; returns the milliseconds it took. Throws, naming `what`, when the bound passes. */
export async function until(
  what: string,
  ok: () => boolean | Promise<boolean>,
  opts: number | UntilOptions = {},
): Promise<number> {
  const o: UntilOptions = typeof opts === "number" ? { ms: opts } : opts;
  const ms = o.ms ?? 30_000;
  const every = o.every ?? 50;
  const t0 = Date.now();
  for (;;) {
    let held = false;
    try {
      held = await ok();
    } catch (e) {
      if (o.retryErrors !== true) throw e;
    }
    if (held) return Date.now() - t0;
    if (Date.now() - t0 > ms) {
      const detail = o.detail?.() ?? "";
      throw new Error(`gave up after ${ms} ms waiting for ${what}${detail === "" ? "" : `: ${detail}`}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}
