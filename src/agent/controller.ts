/**
 * What every controller of the agent is: one resource (endpoints, policies,
 * services, ...), its revisions and its last error.
 *
 *   accepted change --bump()--> desired = n
 *   enforce starts  --snapshot desired-->  kernel accepts --> realized = n
 *                                          kernel refuses --> lastError (realized stays)
 *   lastError stays until a change accepted after it is realized.
 *
 * `desired` counts the changes this controller accepted (validated and
 * persisted) since the agent started; `realized` is the desired revision the
 * kernel held after the last enforce that included it. desired > realized
 * means the kernel lags this controller's changes. Adding a controller (the
 * cluster issue's remote endpoints and nodes) is an addition: implement
 * Controller, give it a Revisions, and list it in the agent's wiring.
 */
import type { Logger } from "pino";
import type { PolicyEngine } from "../policy/engine.js";
import type { Store } from "../store/store.js";

export class Revisions {
  private desiredRev = 0;
  private realizedRev = 0;
  private error: { message: string; at: string } | undefined;
  /** The desired revision when the error happened: a later change realized clears it. */
  private errorRev = 0;

  get desired(): number {
    return this.desiredRev;
  }
  get realized(): number {
    return this.realizedRev;
  }
  get lastError(): { message: string; at: string } | undefined {
    return this.error;
  }

  /** An accepted change; returns the new desired revision. */
  bump(): number {
    return ++this.desiredRev;
  }

  /** The kernel accepted an enforce that included desired revision `rev`. */
  realize(rev: number): void {
    if (rev > this.realizedRev) this.realizedRev = Math.min(rev, this.desiredRev);
    if (this.realizedRev > this.errorRev) this.error = undefined;
  }

  /**
   * A change of this controller, or the enforce that carried it, failed. The
   * error is shown until a later change of this controller is realized.
   */
  fail(e: unknown, at = new Date()): void {
    this.errorRev = this.desiredRev;
    this.error = { message: e instanceof Error ? e.message : String(e), at: at.toISOString() };
  }
}

/** One resource the agent reconciles. */
export interface Controller {
  /** Shown by `membrane get status`: "endpoints", "policies", ... */
  readonly name: string;
  readonly revisions: Revisions;
  /** Reads the controller's state back from the store into the engine (agent start). */
  restore?(): Promise<void>;
}

/** Per controller, as `GET /v1/status` reports it. */
export interface ControllerStatus {
  readonly name: string;
  readonly desired: number;
  readonly realized: number;
  readonly lastError?: { message: string; at: string };
}

export function controllerStatus(cs: readonly Controller[]): ControllerStatus[] {
  return cs.map((c) => {
    const e = c.revisions.lastError;
    return {
      name: c.name,
      desired: c.revisions.desired,
      realized: c.revisions.realized,
      ...(e ? { lastError: e } : {}),
    };
  });
}

/** What an enforce did in the kernel. */
export interface EnforceResult {
  readonly ops: number;
  readonly ms: number;
  readonly endpointsChanged: number;
}

/** What the agent hands every controller (its wiring, no globals). */
export interface ControllerDeps {
  readonly store: Store;
  readonly logger: Logger;
  /** The policy engine (exists once the agent restored identities). */
  readonly engine: () => PolicyEngine;
  /** Recomputes and makes the kernel hold the result (call inside serial()). */
  readonly enforce: () => Promise<EnforceResult>;
  /** Runs `f` alone on the agent's work queue; dropped if `signal` aborted before its turn. */
  readonly serial: <T>(f: () => Promise<T>, signal?: AbortSignal, what?: string) => Promise<T>;
  /** For background work between two slices: waits (bounded) until the work queue is quiet. */
  readonly yieldToWork?: () => Promise<void>;
}
