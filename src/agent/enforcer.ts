/**
 * The one place the agent makes the kernel hold what its controllers want.
 *
 *   controllers' changes --> engine.regenerate() --> identities persisted (before the kernel uses them)
 *     --> proxy snapshot (the proxy holds L7 rules before the kernel redirects to them)
 *     --> Reconciler.apply (one atomic nft transaction) --> realized revisions, rule ids for flows
 *
 * Each controller's desired revision is read once the engine has been
 * recomputed; when the kernel accepts the transaction, that revision becomes
 * the controller's realized one; when it refuses, every controller with
 * changes not yet realized gets the error.
 */
import type { Logger } from "pino";
import type { BypassResetter } from "../datapath/conntrack-flush.js";
import type { Reconciler } from "../datapath/reconcile.js";
import type { DatapathState, ProxyTarget } from "../datapath/types.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { RuleOrigin } from "../policy/types.js";
import type { ProxyWorkers } from "../proxy/runtime/workers.js";
import type { Controller, EnforceResult } from "./controller.js";
import type { EndpointsController } from "./controllers/endpoints.js";
import type { IdentitiesController } from "./controllers/identities.js";
import { DesiredBuilder } from "./desired.js";
import type { Observer } from "./observer.js";
import type { LbL7Frontend } from "./proxy-lb.js";
import { ProxySnapshots } from "./proxy-snapshot.js";

export interface EnforcerParams {
  readonly logger: Logger;
  readonly reconciler: Reconciler;
  readonly bypass: BypassResetter;
  readonly engine: () => PolicyEngine;
  readonly endpoints: EndpointsController;
  readonly identities: IdentitiesController;
  /** Every controller, for their revisions. */
  readonly controllers: () => readonly Controller[];
  readonly proxy: () => { supervisor: ProxyWorkers; target: ProxyTarget } | undefined;
  readonly observer: () => Observer | undefined;
  /** The VXLAN port (host firewall: never judged); undefined: native routing or one node. */
  readonly tunnelPort?: number | undefined;
  /** `--encryption mtls-tunnel`: the tunnel process's group (datapath/compile-tunnel.ts). */
  readonly mtlsTunnelGid?: number | undefined;
  /** Mutual authentication runs (--spiffe): rules requiring it compile to auth segments, not drops. */
  readonly auth?: boolean;
  /** A Service exists (controllers/lb.ts): the policy chains of service connections are installed. */
  readonly services?: () => boolean;
  /** The lb-l7 frontends (controllers/lb.ts): the proxy balances them per request. */
  readonly lbL7?: () => readonly LbL7Frontend[];
}

export class Enforcer {
  /** Rule ids in the kernel's log prefixes -> the rule elements (from the last enforced state). */
  readonly ruleOrigins = new Map<number, RuleOrigin>();
  private last = { ops: 0, ms: 0, at: "" };
  private behind = false;
  private snapshotVersion = 0;
  /** Hands back unchanged endpoints as the same objects, so the datapath skips them. */
  private readonly builder = new DesiredBuilder();
  /** The state the kernel accepted last (mutual authentication judges its pairs on it). */
  applied: DatapathState | undefined;
  /** Hands back the last snapshot's arrays when only host addresses changed. */
  private readonly snapshots = new ProxySnapshots();

  constructor(private readonly p: EnforcerParams) {}

  /** The last kernel apply: operations, milliseconds, when. */
  get lastApply(): { ops: number; ms: number; at: string } {
    return this.last;
  }

  /** True from the start of an enforce until one succeeds: the kernel may lag the engine. */
  get kernelBehind(): boolean {
    return this.behind;
  }

  /** Recomputes, persists new identities, and makes the kernel hold the result (call inside the work queue). */
  async enforce(): Promise<EnforceResult> {
    this.behind = true;
    const engine = this.p.engine();
    await this.p.identities.resolvePending(engine); // cluster mode: numbers before the kernel uses them
    const changed = engine.regenerate();
    const snapshot = () => this.p.controllers().map((c) => [c, c.revisions.desired] as const);
    let included: ReturnType<typeof snapshot> | undefined;
    try {
      await this.p.identities.persist(engine);
      included = snapshot();
      const origins = new Map<number, RuleOrigin>();
      const desired = this.desiredState(origins);
      const proxy = this.p.proxy();
      if (proxy) await proxy.supervisor.push(this.snapshot(engine, desired));
      const r = await this.p.reconciler.apply(desired);
      this.applied = desired;
      // Connections established before a new redirect covers them would bypass the proxy: reset them.
      await this.p.bypass
        .afterApply(desired, (id) => this.p.endpoints.recordById(id)?.netns)
        .then(
          (b) =>
            b.connections > 0 && this.p.logger.info(b, "reset connections that bypassed a new L7 redirect"),
        )
        .catch((e: unknown) =>
          this.p.logger.error({ err: String(e) }, "resetting bypassing connections failed"),
        );
      // Realized: only now that the kernel holds the new rule ids do flows name them.
      this.ruleOrigins.clear();
      for (const [id, o] of origins) this.ruleOrigins.set(id, o);
      this.behind = false;
      for (const [c, rev] of included) c.revisions.realize(rev);
      this.last = { ops: r.ops, ms: r.ms, at: new Date().toISOString() };
      const m = this.p.observer()?.metrics;
      if (m) {
        m.setEndpoints(this.p.endpoints.size);
        m.setIdentities(engine.identityCount);
        m.setPolicyRevision(engine.revision);
        if (r.ops > 0) m.observeNftTransaction(r.ms / 1000);
      }
      return { ops: r.ops, ms: r.ms, endpointsChanged: changed.length };
    } catch (e) {
      for (const [c, rev] of included ?? snapshot()) if (rev > c.revisions.realized) c.revisions.fail(e);
      throw e;
    }
  }

  private snapshot(engine: PolicyEngine, state: DatapathState): ReturnType<ProxySnapshots["build"]> {
    return this.snapshots.build(engine, state, ++this.snapshotVersion, this.p.lbL7?.() ?? []);
  }

  /**
   * Hands the proxy the lb-l7 services as they are now, with the state the kernel holds
   * (the LB controller, around a change of its lb-l7 frontends: the proxy knows a service
   * before the kernel redirects to it, and until the kernel stops).
   */
  async pushProxy(): Promise<void> {
    const proxy = this.p.proxy();
    if (proxy && this.applied) await proxy.supervisor.push(this.snapshot(this.p.engine(), this.applied));
  }

  private resyncing = false;

  /**
   * Compares the kernel with what was applied, reading it in the background
   * (the work queue goes on meanwhile); on a difference, repairs it by delta
   * through `serial` (the work queue).
   */
  async resync(serial: (f: () => Promise<EnforceResult>) => Promise<EnforceResult>): Promise<void> {
    if (this.resyncing) return;
    this.resyncing = true;
    try {
      const v = await this.p.reconciler.verify();
      if (v.drift === 0) return;
      this.p.logger.warn(
        { differences: v.drift, first: v.lines },
        "the kernel differs from what was applied: repairing",
      );
      await serial(() => this.enforce());
    } catch (e) {
      this.p.logger.error({ err: String(e) }, "resync failed");
    } finally {
      this.resyncing = false;
    }
  }

  /** What the kernel should hold now (the engine must be regenerated). */
  desiredState(origins?: Map<number, RuleOrigin>): DatapathState {
    const target = this.p.proxy()?.target;
    const state = this.builder.build(
      this.p.engine(),
      this.p.endpoints.local(),
      {
        authAvailable: this.p.auth === true,
        ...(target ? { proxy: target } : {}),
        ...(this.p.tunnelPort !== undefined ? { tunnelPort: this.p.tunnelPort } : {}),
      },
      origins,
    );
    const tunnel = this.p.mtlsTunnelGid !== undefined ? { ...state, tunnelGid: this.p.mtlsTunnelGid } : state;
    return this.p.services?.() === true ? { ...tunnel, services: true } : tunnel;
  }
}
