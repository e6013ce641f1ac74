/**
 * A few endpoint namespaces made ahead of time, so that a create does not
 * wait for one (the namespace was p50 45-56 / p99 88-144 ms of a create).
 *
 *   start()      sweep: a namespace named <prefix>ep<N> whose id no endpoint uses and nobody
 *                holds (left by an agent that died with its pool, or mid-create) is deleted;
 *                then fill.
 *   fill         one at a time, up to `size`, off the create's path (started when one is taken):
 *                the lowest id that no endpoint uses and nobody holds ->
 *                addFreshNetns(<prefix>ep<id>) (endpoint-fresh.ts: a new namespace with
 *                nothing but `lo`, its sysctls set, made by the helper shell; no process inside).
 *   take()       an id for a new endpoint and, when one is ready, its namespace (the lowest
 *                ready id); else only the id (the caller builds the namespace as before).
 *                The id stays reserved until done(id). take({idOnly}): only an id (an
 *                endpoint whose namespace the container runtime made).
 *   stop()       no more filling; the namespaces still waiting are deleted.
 *
 * A pooled namespace is new: it never held an endpoint (a deleted endpoint's
 * namespace is deleted, never put back), so it carries nothing of another
 * one. It has no veth, so nothing can reach it; the veth is created only
 * after the endpoint's policy is in the kernel (endpoint.ts finish). No
 * process waits inside a pooled namespace; the namespaces an agent that
 * went away leaves are swept at the next start, or by `membrane uninstall`
 * (every namespace under the prefix).
 */
import { MembraneError } from "../errors.js";
import { addFreshNetns, type FreshNetns } from "./endpoint-fresh.js";
import { deleteNetns, listNetns } from "./netns.js";

/**
 * How many namespaces wait ready by default: none. Since a namespace is made through the helper
 * shell (netns-helper.ts: ~2 ms of kernel work and three small execs, no spawn from the agent), it is
 * ready before the endpoint's policy is enforced, so a pooled one saves nothing (measured, session 7).
 */
export const DEFAULT_POOL_SIZE = 0;
/** Endpoint ids are 1..MAX_ENDPOINT_ID (host interface mbr<id>, nft chain names). */
const MAX_ENDPOINT_ID = 65534;

export interface EndpointPoolParams {
  /** Names endpoint namespaces `<netnsPrefix>ep<id>`. */
  readonly netnsPrefix: string;
  /** Namespaces kept ready (0 = none: take() hands out ids only). */
  readonly size?: number | undefined;
  /** Is `id` an existing endpoint's? */
  readonly used: (id: number) => boolean;
  /** A failed fill or sweep (logged by the caller); the pool goes on with fewer. */
  readonly onError?: (e: unknown) => void;
}

export interface PoolTake {
  readonly id: number;
  readonly netns: string;
  /** The namespace, ready (absent: the pool had none; netns does not exist yet). */
  readonly fresh?: FreshNetns;
}

/** The namespace name of endpoint `id`. */
export const endpointNetnsName = (netnsPrefix: string, id: number): string => `${netnsPrefix}ep${id}`;

export class EndpointPool {
  private readonly ready = new Map<number, FreshNetns>();
  /** Ids being filled or handed out and not yet done. */
  private readonly held = new Set<number>();
  private running = false;
  private filling: Promise<void> | undefined;
  private readonly size: number;

  constructor(private readonly p: EndpointPoolParams) {
    this.size = p.size ?? DEFAULT_POOL_SIZE;
  }

  /** Ids with a namespace waiting (tests, status). */
  readyIds(): number[] {
    return [...this.ready.keys()].sort((a, b) => a - b);
  }

  /** Sweeps leftovers, then fills in the background; the promise (never rejected) ends with the first fill. */
  start(): Promise<void> {
    if (this.running) return this.filling ?? Promise.resolve();
    this.running = true;
    const first = this.sweep()
      .catch((e: unknown) => this.p.onError?.(e))
      .then(() => this.fill());
    this.filling = first;
    return first;
  }

  /** An id for a new endpoint and its pooled namespace when one is ready; done(id) ends the reservation. */
  take(o: { idOnly?: boolean } = {}): PoolTake {
    for (const id of o.idOnly === true ? [] : this.readyIds()) {
      const fresh = this.ready.get(id) as FreshNetns;
      this.ready.delete(id);
      this.held.add(id);
      if (fresh.alive()) {
        this.refill(); // starts now: the whole create's time to make the next one
        return { id, netns: this.name(id), fresh };
      }
      // Its process died (killed from outside): not used; deleted off this path.
      void deleteNetns(this.name(id))
        .catch((e: unknown) => this.p.onError?.(e))
        .finally(() => this.done(id));
    }
    const free = this.freeId();
    this.held.add(free);
    return { id: free, netns: this.name(free) };
  }

  /** A create that failed before it used `t`: its namespace goes back to the pool; rethrows `e`. */
  giveBack(t: PoolTake, e: unknown): never {
    this.held.delete(t.id);
    if (t.fresh !== undefined) {
      if (this.running && t.fresh.alive()) this.ready.set(t.id, t.fresh);
      else {
        t.fresh.abort();
        void deleteNetns(t.netns).catch((err: unknown) => this.p.onError?.(err));
      }
    }
    throw e;
  }

  /** The create of `id` ended (its record exists, or it was undone): its id is no longer held. */
  done(id: number): void {
    this.held.delete(id);
    this.refill();
  }

  private refill(): void {
    if (this.running && this.filling === undefined) this.filling = this.fill();
  }

  /** Stops filling and deletes the namespaces still waiting. */
  async stop(): Promise<void> {
    this.running = false;
    await this.filling;
    const left = [...this.ready];
    this.ready.clear();
    await Promise.all(
      left.map(async ([id, ns]) => {
        ns.abort();
        await deleteNetns(this.name(id)).catch((e: unknown) => this.p.onError?.(e));
      }),
    );
  }

  private name(id: number): string {
    return endpointNetnsName(this.p.netnsPrefix, id);
  }

  private freeId(): number {
    for (let i = 1; i <= MAX_ENDPOINT_ID; i++) if (!this.p.used(i) && !this.holds(i)) return i;
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot create an endpoint: ${MAX_ENDPOINT_ID} endpoints exist on this node`,
    );
  }

  private holds(id: number): boolean {
    return this.held.has(id) || this.ready.has(id);
  }

  /** One namespace at a time until `size` are ready, the pool stops, or a fill fails. */
  private async fill(): Promise<void> {
    try {
      while (this.running && this.ready.size < this.size) {
        // Yield first: a create that is starting runs before the next spawn.
        await new Promise((r) => setImmediate(r));
        if (!this.running) break;
        const id = this.freeId();
        this.held.add(id);
        try {
          const ns = await addFreshNetns(this.name(id), "the endpoint namespace pool");
          if (this.running) this.ready.set(id, ns);
          else {
            ns.abort();
            await deleteNetns(this.name(id));
          }
        } finally {
          this.held.delete(id);
        }
      }
    } catch (e) {
      this.p.onError?.(e); // the next done() tries again
    } finally {
      this.filling = undefined;
    }
  }

  /** Deletes <prefix>ep<N> namespaces whose id no endpoint uses and nobody holds. */
  private async sweep(): Promise<void> {
    const re = new RegExp(`^${this.p.netnsPrefix.replace(/[.]/g, "\\.")}ep([0-9]{1,5})$`);
    for (const name of await listNetns()) {
      const id = Number(re.exec(name)?.[1] ?? NaN);
      if (!Number.isInteger(id) || this.p.used(id) || this.holds(id)) continue;
      await deleteNetns(name);
    }
  }
}
