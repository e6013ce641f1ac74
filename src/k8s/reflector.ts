/**
 * One resource kept in step with the Kubernetes API, as client-go's
 * reflector does it:
 *
 *   list (all pages) --replace(items)--> sink            resourceVersion R
 *   watch from R (bookmarks on) --upsert/delete--> sink  R follows every event and BOOKMARK
 *     stream closed by the server -----------> watch again from R
 *     410 Gone (ERROR event or HTTP 410) ----> list again (replace: what vanished is deleted)
 *     401 Unauthorized ----------------------> api.unauthorized(): credentials read again, then as below
 *     any other failure (an over-long line too) --> backoff (doubling, capped), then watch from R / list
 *     every resyncMs ------------------------> list again (replace), whatever happened
 *
 * Events reach the sink one at a time, in the order the server sent them;
 * a sink's failure is its own to log (handle() never throws here).
 */
import type { Logger } from "pino";
import { K8sHttpError, type K8sApi, type KObject } from "./api.js";
import { collectionPath, type WatchedResource } from "./resources.js";

export type ReflectorEvent =
  | { readonly type: "replace"; readonly items: readonly KObject[] }
  | { readonly type: "upsert"; readonly object: KObject }
  | { readonly type: "delete"; readonly object: KObject };

export interface BackoffConfig {
  readonly initialMs: number;
  readonly maxMs: number;
}

export interface ReflectorParams {
  readonly api: K8sApi;
  readonly resource: WatchedResource;
  readonly logger: Logger;
  readonly handle: (ev: ReflectorEvent) => Promise<void>;
  /** Relist this often (ms); 0 = never. */
  readonly resyncMs: number;
  readonly backoff: BackoffConfig;
  /** Pages of one list at most (a server that never ends a list is refused). */
  readonly maxPages?: number;
}

/** What the reflector did, for status and tests. */
export interface ReflectorStats {
  lists: number;
  watches: number;
  events: number;
  bookmarks: number;
  gone: number;
  failures: number;
  /** Failures since the last list or watch that worked (0: healthy). */
  consecutiveFailures: number;
  lastError: { at: string; message: string } | undefined;
  resourceVersion: string | undefined;
}

type WatchEnd =
  | { readonly kind: "closed"; readonly events: number }
  | { readonly kind: "gone" }
  | { readonly kind: "failed"; readonly err: unknown };

export class Reflector {
  readonly stats: ReflectorStats = {
    lists: 0,
    watches: 0,
    events: 0,
    bookmarks: 0,
    gone: 0,
    failures: 0,
    consecutiveFailures: 0,
    lastError: undefined,
    resourceVersion: undefined,
  };
  private stopped = false;
  private loop: Promise<void> | undefined;
  private current: AbortController | undefined;
  /** Ends the current watch now, even before its response came (stop, relist). */
  private endWatch: (() => void) | undefined;
  private wake: (() => void) | undefined;
  private relistDue = false;
  private timer: NodeJS.Timeout | undefined;
  private syncedOnce: (() => void) | undefined;
  /** Resolves after the first list reached the sink. */
  readonly synced: Promise<void>;

  constructor(private readonly p: ReflectorParams) {
    this.synced = new Promise((r) => (this.syncedOnce = r));
  }

  start(): void {
    this.loop = this.run();
    if (this.p.resyncMs > 0) {
      this.timer = setInterval(() => this.relist(), this.p.resyncMs);
      this.timer.unref();
    }
  }

  /** Ends the current watch and lists again (the periodic resync). */
  relist(): void {
    this.relistDue = true;
    this.current?.abort();
    this.endWatch?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.current?.abort();
    this.endWatch?.();
    this.wake?.();
    await this.loop;
  }

  private get what(): string {
    return this.p.resource.resource;
  }

  private async run(): Promise<void> {
    let rv: string | undefined;
    const st = this.stats;
    while (!this.stopped) {
      try {
        if (rv === undefined || this.relistDue) {
          this.relistDue = false;
          rv = await this.list();
          st.consecutiveFailures = 0;
        }
        const end = await this.watchOnce(rv);
        rv = st.resourceVersion ?? rv;
        if (end.kind === "gone") {
          st.gone++;
          this.p.logger.info(
            { resource: this.what, resourceVersion: rv },
            "kubernetes watch: 410 Gone, listing again",
          );
          rv = undefined;
          continue;
        }
        if (end.kind === "closed" && (end.events > 0 || this.relistDue)) {
          st.consecutiveFailures = 0;
          continue;
        }
        if (this.stopped) break;
        // Failed, or closed without delivering anything: wait before trying again.
        if (end.kind === "failed") this.failed("watch", end.err);
        else {
          st.failures++;
          st.consecutiveFailures++;
        }
      } catch (e) {
        if (e instanceof K8sHttpError && e.status === 410) {
          rv = undefined; // an expired continue token: list from the start
          st.gone++;
          continue;
        }
        this.failed("list", e);
      }
      await this.sleep(backoffMs(this.p.backoff, st.consecutiveFailures));
    }
  }

  /** Counts, logs and shows a failure; a 401 makes the API read its credentials again. */
  private failed(what: "list" | "watch", err: unknown): void {
    this.stats.failures++;
    const failures = ++this.stats.consecutiveFailures;
    const message = errText(err);
    this.stats.lastError = { at: new Date().toISOString(), message };
    if (err instanceof K8sHttpError && err.status === 401) this.p.api.unauthorized?.(message);
    this.p.logger.warn(
      { resource: this.what, failures, err: message },
      `kubernetes ${what} failed; retrying after backoff`,
    );
  }

  /** Lists every page, hands the whole set over, returns the list's resourceVersion. */
  private async list(): Promise<string> {
    const path = collectionPath(this.p.resource);
    const items: KObject[] = [];
    let token: string | undefined;
    let rv = "";
    const maxPages = this.p.maxPages ?? 10_000;
    for (let page = 0; ; page++) {
      if (page >= maxPages) throw new Error(`the list of ${path} has more than ${maxPages} pages`);
      const r = await this.p.api.listPage(path, token);
      for (const i of r.items) items.push(i);
      rv = r.resourceVersion;
      token = r.continueToken;
      if (token === undefined) break;
    }
    this.stats.lists++;
    this.stats.resourceVersion = rv;
    await this.p.handle({ type: "replace", items });
    this.syncedOnce?.();
    return rv;
  }

  /** One watch stream, until it ends; events are handled in order before this resolves. */
  private async watchOnce(fromRv: string): Promise<WatchEnd> {
    let rv = fromRv;
    let events = 0;
    let gone = false;
    let over = false;
    let chain = Promise.resolve();
    const enqueue = (ev: ReflectorEvent): Promise<void> => {
      chain = chain.then(() => this.p.handle(ev));
      return chain;
    };
    this.stats.watches++;
    const ended = new Promise<unknown>((resolve) => {
      this.endWatch = () => resolve(undefined);
      const timeout = 300 + Math.floor(Math.random() * 300); // as client-go: 5-10 minutes, spread
      this.p.api
        .watch(
          collectionPath(this.p.resource),
          rv,
          timeout,
          (type, obj) => {
            if (over) return;
            const objRv = resourceVersionOf(obj);
            if (type === "BOOKMARK") {
              this.stats.bookmarks++;
              if (objRv) rv = objRv;
              return;
            }
            if (type === "ERROR") {
              if ((obj as { code?: unknown }).code === 410) gone = true;
              else
                this.p.logger.warn(
                  { resource: this.what, status: statusText(obj) },
                  "kubernetes watch: ERROR event",
                );
              this.current?.abort();
              return;
            }
            if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED") return;
            events++;
            this.stats.events++;
            if (objRv) rv = objRv;
            return enqueue(
              type === "DELETED" ? { type: "delete", object: obj } : { type: "upsert", object: obj },
            );
          },
          (err) => resolve(err),
          () => (this.stats.consecutiveFailures = 0), // the stream is open: the last failure is over
        )
        .then((c) => {
          if (over || this.stopped || this.relistDue) c.abort();
          else this.current = c;
        }, resolve);
    });
    const err = await ended;
    over = true;
    this.endWatch = undefined;
    this.current?.abort();
    this.current = undefined;
    await chain;
    // The caller watches again from the newest version seen.
    this.stats.resourceVersion = rv;
    if (gone || (err instanceof K8sHttpError && err.status === 410)) return { kind: "gone" };
    if (err !== undefined && err !== null && !isAbort(err)) return { kind: "failed", err };
    return { kind: "closed", events };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

/** Doubling from initialMs, capped at maxMs, with up to 20 % jitter (many agents do not retry in step). */
export function backoffMs(b: BackoffConfig, failures: number): number {
  const base = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(base * (1 - Math.random() * 0.2));
}

function resourceVersionOf(o: KObject): string | undefined {
  const rv = (o["metadata"] as { resourceVersion?: unknown } | undefined)?.resourceVersion;
  return typeof rv === "string" && rv !== "" ? rv : undefined;
}

function statusText(o: KObject): string {
  const m = o["message"];
  return typeof m === "string" ? m.slice(0, 200) : JSON.stringify(o).slice(0, 200);
}

function isAbort(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { name?: unknown }).name === "AbortError";
}

function errText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).slice(0, 300);
}
