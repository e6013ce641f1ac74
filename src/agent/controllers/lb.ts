/**
 * Services in the kernel (lb/, datapath/lb-table.ts): the Services and
 * EndpointSlices `membrane apply` gives, persisted under `lb/services/` and
 * `lb/slices/`, and the node's LB table kept equal to what they and the
 * endpoints (local and other nodes') ask for.
 *
 *   apply(text) --parse whole--> allocate from the store, write with the reservations (lb-reserve.ts)
 *               --> engine.upsertService (toServices)
 *               --> LbModel (the changed services marked)
 *               --> enforce (policy) --> sync --> LbTable.update
 *   every enforce --> sync: the pods changed since the last one (engine.pods' log) --> LbModel
 *                     --> only the services they touch recomputed --> their element delta, or nothing
 *
 * A refused file (a parse problem, an address another service holds) changes nothing.
 *
 * Cluster mode: the store given is the cluster's (cluster/resource-store.ts: `lb/` keys in etcd),
 * so a Service or slice applied on one node is written once for all; every node takes what the
 * others wrote through syncRecord (cluster/resources.ts watches etcd) and balances to backends on
 * any node (other nodes' pods are remote endpoints, reached as the cluster routes pods).
 */
import { MembraneError } from "../../errors.js";
import { LbTable } from "../../datapath/lb-table.js";
import { serviceFrontends, type ServiceFrontends } from "../../lb/frontends.js";
import { LbModel } from "../../lb/model.js";
import { inCidrs } from "../../lb/desired.js";
import { parseLbResources } from "../../lb/parse.js";
import {
  DEFAULT_LB_CONFIG,
  type LbConfig,
  type LbService,
  type LbSlice,
  type ServiceView,
} from "../../lb/types.js";
import type { ServiceSpec } from "../../policy/query.js";
import { readServiceRecord, readSliceRecord } from "../../lb/record.js";
import type { SyncedResource } from "../../cluster/synced.js";
import type { LbBackend, LbFrontend } from "../../datapath/lb-types.js";
import type { LbL7Frontend } from "../proxy-lb.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import { SVC_KEY, writeServices } from "./lb-reserve.js";
import { HealthServers } from "../../lb/health-server.js";
import type { HealthCheck } from "../../lb/health-answer.js";

const SLICE_KEY = "lb/slices/";

export interface LbApplyReport {
  /** Cluster mode: the etcd revision `apply --wait` waits for (api/lb-routes.ts). */
  clusterRevision?: number;
  resources: {
    kind: "Service" | "EndpointSlice";
    name: string;
    status: "created" | "configured" | "unchanged" | "deleted";
  }[];
}

export interface LbControllerParams extends ControllerDeps {
  readonly nodeNetns?: string;
  /** The LB table's name (family inet); the policy table's name + "_lb". */
  readonly table: string;
  readonly config?: Partial<LbConfig>;
  /** The node's IPv4 pod CIDRs (a NodePort connection to a pod elsewhere is masqueraded). */
  readonly localCidrs?: readonly string[];
  /**
   * The node runs the L7 proxy: lb-l7 services are balanced per request by it (without one,
   * they stay in the kernel, balanced per connection). `proxyPush` hands the proxy the
   * lb-l7 frontends (l7Frontends()) as they are now.
   */
  readonly proxyPush?: () => Promise<void>;
  /** The flow observer's NFLOG group: new service connections are logged before their DNAT. */
  readonly logGroup?: number;
}

export class LbController implements Controller, SyncedResource {
  readonly name = "services-lb";
  /** The store prefix of Services and EndpointSlices (cluster mode: shared through etcd). */
  readonly prefix = "lb/";
  readonly revisions = new Revisions();
  private readonly services = new Map<string, LbService>();
  private readonly slices = new Map<string, LbSlice>();
  private readonly kernel: LbTable;
  private readonly cfg: LbConfig;
  /** The desired state per service, recomputed where something changed (lb/model.ts). */
  private readonly model: LbModel;
  /** This process wrote the LB table (it exists): removed when the last Service goes. */
  private tableWritten = false;
  /** Where sync() is in the engine's pod log (undefined: the model holds no pods). */
  private podCursor: number | undefined;
  /** The lb-l7 frontends by service (proxy-lb.ts), and what the proxy is handed (l7Frontends). */
  private readonly l7 = new Map<string, LbFrontend[]>();
  private l7List: readonly LbL7Frontend[] = [];
  private frontendsAt: { rev: number; index: ServiceFrontends } | undefined;
  /** kube-proxy's health check servers (healthCheckNodePort), and the services that have one. */
  private readonly health: HealthServers;
  private readonly withHealth = new Set<string>();

  constructor(private readonly d: LbControllerParams) {
    this.health = new HealthServers({
      ...(d.nodeNetns !== undefined ? { netns: d.nodeNetns } : {}),
      onError: (c, why) =>
        d.logger.warn({ service: `${c.namespace}/${c.name}`, port: c.port, err: why }, "cannot serve the health check node port; tried again at the next change"), // prettier-ignore
    });
    this.kernel = new LbTable({
      ...(d.nodeNetns !== undefined ? { netns: d.nodeNetns } : {}),
      table: d.table,
      ...(d.localCidrs ? { localCidrs: d.localCidrs } : {}),
      ...(d.logGroup !== undefined ? { logGroup: d.logGroup } : {}),
    });
    this.cfg = { ...DEFAULT_LB_CONFIG, ...d.config };
    this.model = new LbModel(inCidrs(d.localCidrs ?? []));
  }

  /** The Services applied (allocated), for the gateway's backendRefs. */
  specs(): LbService[] {
    return [...this.services.values()];
  }

  /** The frontends the proxy balances per request (`service.cilium.io/lb-l7: enabled`). */
  l7Frontends(): readonly LbL7Frontend[] {
    return this.l7List;
  }

  private listL7(): LbL7Frontend[] {
    return [...this.l7].flatMap(([service, fs]) => fs.map((frontend) => ({ service, frontend })));
  }

  /**
   * Takes the lb-l7 frontends out of `changes` (the proxy balances them; without a proxy, they
   * stay plain frontends); true when they changed.
   */
  private takeL7(changes: Map<string, LbFrontend[]>): boolean {
    let changed = false;
    for (const [key, fs] of changes) {
      if (!this.d.proxyPush) {
        changes.set(key, fs.map(({ l7: _l7, ...f }) => f)); // prettier-ignore
        continue;
      }
      const mine = fs.filter((f) => f.l7 === true);
      if (JSON.stringify(mine) === JSON.stringify(this.l7.get(key) ?? [])) continue;
      changed = true;
      if (mine.length > 0) this.l7.set(key, mine);
      else this.l7.delete(key);
    }
    return changed;
  }

  /** Which Service answers on an address (flows' source_service / destination_service), rebuilt per revision. */
  frontends(): ServiceFrontends {
    const rev = this.revisions.desired;
    if (this.frontendsAt?.rev !== rev)
      this.frontendsAt = { rev, index: serviceFrontends(this.services.values()) };
    return this.frontendsAt.index;
  }

  /** Any Service applied: the policy table holds the chains that judge service connections after DNAT. */
  hasServices(): boolean {
    return this.services.size > 0;
  }

  async restore(): Promise<void> {
    for (const prefix of [SVC_KEY, SLICE_KEY])
      for (const kv of (await this.d.store.list(prefix)).kvs) this.syncRecord(kv.key, kv.value);
  }

  /**
   * A stored record into the view, the model and the engine (at start, and in cluster mode what
   * another node wrote); false when nothing changed (this node's own write coming back). A record
   * that does not decode is logged and skipped.
   */
  syncRecord(key: string, value: string | undefined): boolean {
    const svc = key.startsWith(SVC_KEY);
    if (!svc && !key.startsWith(SLICE_KEY)) return false;
    const id = key.slice((svc ? SVC_KEY : SLICE_KEY).length);
    const known: Map<string, LbService | LbSlice> = svc ? this.services : this.slices;
    const was = known.get(id);
    let now: LbService | LbSlice | undefined;
    try {
      now = value === undefined ? undefined : svc ? readServiceRecord(value, id) : readSliceRecord(value, id);
    } catch (e) {
      this.d.logger.error({ key, err: String(e) }, "stored service cannot be read; skipped");
      return false;
    }
    if (JSON.stringify(was) === JSON.stringify(now)) return false;
    if (now === undefined) known.delete(id);
    else known.set(id, now);
    if (svc) this.trackHealth(id, now as LbService | undefined);
    const [ns = "", name = ""] = id.split("/");
    if (svc) {
      this.model.setService(id, now as LbService | undefined);
      if (now) this.d.engine().upsertService(this.policySpec(now as LbService));
      else this.d.engine().deleteService(ns, name);
    } else {
      this.model.setSlice(id, now as LbSlice | undefined);
      // A selector-less service's toServices addresses are its slices' (policySpec).
      for (const sl of [was, now] as (LbSlice | undefined)[]) {
        const s = sl && this.services.get(`${sl.namespace}/${sl.service}`);
        if (s && !s.selector) this.d.engine().upsertService(this.policySpec(s));
      }
    }
    this.revisions.bump();
    return true;
  }

  syncedKeys(): string[] {
    return [...[...this.services.keys()].map((k) => SVC_KEY + k), ...[...this.slices.keys()].map((k) => SLICE_KEY + k)]; // prettier-ignore
  }

  private trackHealth(key: string, s: LbService | undefined): void {
    if (s?.healthCheckNodePort !== undefined) this.withHealth.add(key);
    else this.withHealth.delete(key);
  }

  /** What the health check ports answer now (lb/health-server.ts). */
  private healthChecks(): HealthCheck[] {
    const out: HealthCheck[] = [];
    for (const key of this.withHealth) {
      const v = this.model.view(key);
      if (v?.healthCheckNodePort !== undefined)
        out.push({ namespace: v.namespace, name: v.name, port: v.healthCheckNodePort, localEndpoints: v.localEndpoints ?? 0 }); // prettier-ignore
    }
    return out;
  }

  /** toServices sees a Service as a selector (its pods) or its slices' addresses. */
  private policySpec(s: LbService): ServiceSpec {
    const ips = [...this.slices.values()]
      .filter((sl) => sl.namespace === s.namespace && sl.service === s.name)
      .flatMap((sl) => sl.endpoints.flatMap((e) => e.addresses));
    return {
      name: s.name,
      namespace: s.namespace,
      labels: s.labels,
      ports: s.ports.map((p) => ({ port: p.port, protocol: p.protocol })),
      ...(s.selector ? { selector: s.selector } : { ips: [...new Set(ips)] }),
    };
  }

  apply(text: string, file: string): Promise<LbApplyReport> {
    return this.change(text, file, "apply");
  }

  delete(text: string, file: string): Promise<LbApplyReport> {
    return this.change(text, file, "delete");
  }

  private async change(text: string, file: string, op: "apply" | "delete"): Promise<LbApplyReport> {
    const parsed = parseLbResources(text, file); // refused whole before anything runs
    return this.d.serial(async () => {
      const report: LbApplyReport = { resources: [] };
      // Services: allocated from what the store holds and written with their reservations, in
      // one transaction that another node's allocation of the same address cannot pass (lb-reserve.ts).
      const written = await writeServices({ store: this.d.store, logger: this.d.logger, cfg: this.cfg, op, services: parsed.services }); // prettier-ignore
      const svcs = new Map<string, LbService | undefined>();
      let changed = false; // this node's view (it may have lagged what the store held)
      for (const [key, r] of written) {
        svcs.set(key, r.now);
        report.resources.push({ kind: "Service", name: key, status: r.status });
        if (JSON.stringify(this.services.get(key)) === JSON.stringify(r.now)) continue;
        if (r.now) this.services.set(key, r.now);
        else this.services.delete(key);
        this.trackHealth(key, r.now);
        this.model.setService(key, r.now);
        changed = true;
      }
      // Slices: written as given.
      for (const sl of parsed.slices) {
        const key = `${sl.namespace}/${sl.name}`;
        const v = op === "apply" ? sl : undefined;
        const was = this.slices.get(key);
        const status = v === undefined ? (was ? "deleted" : "unchanged") : !was ? "created" : JSON.stringify(was) === JSON.stringify(v) ? "unchanged" : "configured"; // prettier-ignore
        report.resources.push({ kind: "EndpointSlice", name: key, status });
        if (status === "unchanged") continue;
        if (v === undefined) await this.d.store.delete(SLICE_KEY + key);
        else await this.d.store.put(SLICE_KEY + key, JSON.stringify(v));
        if (v === undefined) this.slices.delete(key);
        else this.slices.set(key, v);
        this.model.setSlice(key, v);
        changed = true;
      }
      if (!changed) return report;
      for (const [key, s] of svcs) {
        const [ns = "", name = ""] = key.split("/");
        if (s) this.d.engine().upsertService(this.policySpec(s));
        else this.d.engine().deleteService(ns, name);
      }
      // A selector-less service's toServices addresses are its slices' (policySpec).
      const touched = new Set(parsed.slices.map((sl) => `${sl.namespace}/${sl.service}`));
      for (const key of touched) {
        const s = this.services.get(key);
        if (s && !s.selector && !svcs.has(key)) this.d.engine().upsertService(this.policySpec(s));
      }
      this.revisions.bump();
      await this.d.enforce(); // the policy first, then the LB table (sync, after every enforce)
      return report;
    });
  }

  /**
   * Makes the LB table match the services and the endpoints now (after every enforce). Its cost
   * follows the change: the pods changed since the last call, the services they, a Service or a
   * slice touched, and those services' elements. With no Service, it holds no pods and does nothing.
   */
  async sync(): Promise<void> {
    const pods = this.d.engine().pods;
    if (this.services.size === 0) {
      if (this.podCursor !== undefined) this.model.clearPods();
      this.podCursor = undefined;
      this.model.flush(); // what clearing the pods marked: services gone, nothing to write
      this.l7.clear();
      this.l7List = [];
      await this.health.sync([], true);
      // No Service: no LB table at all, since its base chains would see every packet for nothing
      // (issue 10's throughput). The table this process wrote goes with the last Service.
      if (this.tableWritten) {
        const rev = this.revisions.desired;
        try {
          await this.kernel.destroy();
          this.tableWritten = false;
          this.revisions.realize(rev);
        } catch (err) {
          this.revisions.fail(err);
          throw new MembraneError("NFT_APPLY_FAILED", `Cannot remove the services' table: ${String(err)}`, {
            cause: err,
          });
        }
      }
      return;
    }
    const changed = this.podCursor === undefined ? undefined : pods.since(this.podCursor);
    const head = pods.head;
    if (changed === undefined) {
      // First sync with services (or the log no longer reaches back): every pod once.
      this.model.clearPods();
      for (const [k, p] of pods.all()) this.model.setPod(k, p);
    } else for (const k of new Set(changed)) this.model.setPod(k, pods.get(k));
    this.podCursor = head;
    const changes = this.model.flush();
    const rev = this.revisions.desired;
    if (changes.size === 0 && !this.kernel.needsFull) {
      if (this.withHealth.size > 0) await this.health.sync(this.healthChecks(), true);
      return this.revisions.realize(rev);
    }
    const was = this.l7List;
    const l7Changed = this.takeL7(changes);
    if (l7Changed && this.d.proxyPush) {
      // Make before break: the proxy knows the old and new lb-l7 frontends while the kernel changes.
      const now = this.listL7();
      const keys = new Set(now.map((f) => `${f.frontend.ip}|${f.frontend.port}`));
      this.l7List = [...now, ...was.filter((f) => !keys.has(`${f.frontend.ip}|${f.frontend.port}`))];
      await this.d.proxyPush();
      this.l7List = now;
    }
    try {
      await this.kernel.update(changes);
      if (l7Changed && this.d.proxyPush) await this.d.proxyPush();
      this.tableWritten = true;
      this.revisions.realize(rev);
      if (this.withHealth.size > 0 || this.health.ports > 0) await this.health.sync(this.healthChecks(), true); // prettier-ignore
    } catch (err) {
      this.revisions.fail(err);
      // The table is not as desired: the health checks say so (503), an outside balancer moves away.
      await this.health.sync(this.healthChecks(), false);
      throw new MembraneError("NFT_APPLY_FAILED", `Cannot program the services' table: ${String(err)}`, {
        cause: err,
      });
    }
  }

  list(): ServiceView[] {
    return this.model.list();
  }

  /** Per Service port of `namespace/name`, its active endpoints and the port each serves it on (the gateway's). */
  portBackends(key: string): Map<number, LbBackend[]> | undefined {
    return this.model.portBackends(key);
  }

  /** Agent stop: the element writer's process ends; the kernel keeps the table; health checks stop answering. */
  stop(): void {
    this.health.stop();
    this.kernel.stop();
  }

  /** Uninstall: the LB table goes with the policy table. */
  destroy(): Promise<void> {
    return this.kernel.destroy();
  }
}
