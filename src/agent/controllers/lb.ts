/**
 * Services in the kernel (lb/, datapath/lb-table.ts): the Services and
 * EndpointSlices `membrane apply` gives, persisted under `lb/services/` and
 * `lb/slices/`, and the node's LB table kept equal to what they and the
 * endpoints (local and other nodes') ask for.
 *
 *   apply(text) --parse whole, allocate--> store --> engine.upsertService (toServices)
 *                                                --> enforce (policy) --> sync: desiredLb --> LbTable
 *   every enforce (endpoints come and go) --> sync (an element delta, or nothing)
 *
 * A refused file (a parse problem, an address another service holds) changes nothing.
 */
import { MembraneError } from "../../errors.js";
import { LbTable } from "../../datapath/lb-table.js";
import { allocate, type InUse } from "../../lb/allocate.js";
import { desiredLb, type LbPod } from "../../lb/desired.js";
import { parseLbResources } from "../../lb/parse.js";
import {
  DEFAULT_LB_CONFIG,
  type LbConfig,
  type LbService,
  type LbSlice,
  type ServiceView,
} from "../../lb/types.js";
import type { ServiceSpec } from "../../policy/query.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";

const SVC_KEY = "lb/services/";
const SLICE_KEY = "lb/slices/";

export interface LbApplyReport {
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
}

export class LbController implements Controller {
  readonly name = "services-lb";
  readonly revisions = new Revisions();
  private readonly services = new Map<string, LbService>();
  private readonly slices = new Map<string, LbSlice>();
  private readonly kernel: LbTable;
  private readonly cfg: LbConfig;
  private views: ServiceView[] = [];

  constructor(private readonly d: LbControllerParams) {
    this.kernel = new LbTable({
      ...(d.nodeNetns !== undefined ? { netns: d.nodeNetns } : {}),
      table: d.table,
    });
    this.cfg = { ...DEFAULT_LB_CONFIG, ...d.config };
  }

  /** The Services applied (allocated), for the gateway's backendRefs. */
  specs(): LbService[] {
    return [...this.services.values()];
  }

  /** Any Service applied: the policy table holds the chains that judge service connections after DNAT. */
  hasServices(): boolean {
    return this.services.size > 0;
  }

  async restore(): Promise<void> {
    for (const [prefix, into] of [
      [SVC_KEY, this.services],
      [SLICE_KEY, this.slices],
    ] as const) {
      for (const kv of (await this.d.store.list(prefix)).kvs) {
        try {
          (into as Map<string, unknown>).set(kv.key.slice(prefix.length), JSON.parse(kv.value) as unknown);
        } catch (e) {
          this.d.logger.error({ key: kv.key, err: String(e) }, "stored service cannot be read; skipped");
        }
      }
    }
    for (const s of this.services.values()) this.d.engine().upsertService(this.policySpec(s));
    if (this.services.size > 0) this.revisions.bump();
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
      const svcs = new Map<string, LbService | undefined>();
      if (op === "apply") {
        const used = this.inUse();
        for (const s of parsed.services) {
          const key = `${s.namespace}/${s.name}`;
          const a = allocate(s, this.services.get(key), used, this.cfg);
          (used.ips as Map<string, string>).set(a.clusterIP ?? "", key);
          if (a.loadBalancerIP) (used.ips as Map<string, string>).set(a.loadBalancerIP, key);
          for (const p of a.ports) if (p.nodePort) (used.nodePorts as Map<string, string>).set(`${p.protocol}/${p.nodePort}`, key); // prettier-ignore
          svcs.set(key, a);
        }
      } else for (const s of parsed.services) svcs.set(`${s.namespace}/${s.name}`, undefined);
      const slices = new Map(
        parsed.slices.map((s) => [`${s.namespace}/${s.name}`, op === "apply" ? s : undefined]),
      );
      // Everything checked and allocated: persist, then take it.
      for (const [kind, prefix, items, known] of [
        ["Service", SVC_KEY, svcs, this.services],
        ["EndpointSlice", SLICE_KEY, slices, this.slices],
      ] as const) {
        for (const [key, v] of items as Map<string, LbService | LbSlice | undefined>) {
          const was = (known as Map<string, unknown>).get(key);
          const status = v === undefined ? (was ? "deleted" : "unchanged") : !was ? "created" : JSON.stringify(was) === JSON.stringify(v) ? "unchanged" : "configured"; // prettier-ignore
          report.resources.push({ kind, name: key, status });
          if (status === "unchanged") continue;
          if (v === undefined) await this.d.store.delete(prefix + key);
          else await this.d.store.put(prefix + key, JSON.stringify(v));
          if (v === undefined) (known as Map<string, unknown>).delete(key);
          else (known as Map<string, unknown>).set(key, v);
        }
      }
      if (report.resources.every((r) => r.status === "unchanged")) return report;
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

  private inUse(): InUse {
    const ips = new Map<string, string>();
    const nodePorts = new Map<string, string>();
    for (const [key, s] of this.services) {
      if (s.clusterIP && s.clusterIP !== "None") ips.set(s.clusterIP, key);
      if (s.loadBalancerIP) ips.set(s.loadBalancerIP, key);
      for (const p of s.ports) if (p.nodePort) nodePorts.set(`${p.protocol}/${p.nodePort}`, key);
    }
    return { ips, nodePorts };
  }

  /** Makes the LB table match the services and the endpoints now (after every enforce). */
  async sync(): Promise<void> {
    // No service ever: no table, and nothing computed. This runs after every enforce, and the pods
    // below are every endpoint of the cluster (50,000 remote ones in the scale bench: ~50 ms a call).
    if (this.services.size === 0 && this.views.length === 0) return;
    const e = this.d.engine();
    const pods: LbPod[] = [
      ...e.listEndpoints().map((r) => r.spec),
      ...e.remoteEndpoints().map((r) => ({ ...r.spec, ips: [r.spec.ip] })),
    ];
    const want = desiredLb([...this.services.values()], pods, [...this.slices.values()]);
    const rev = this.revisions.desired;
    try {
      await this.kernel.apply(want.state);
      this.views = want.views;
      this.revisions.realize(rev);
    } catch (err) {
      this.revisions.fail(err);
      throw new MembraneError("NFT_APPLY_FAILED", `Cannot program the services' table: ${String(err)}`, {
        cause: err,
      });
    }
  }

  list(): ServiceView[] {
    return this.views;
  }

  /** Agent stop: the element writer's process ends; the kernel keeps the table. */
  stop(): void {
    this.kernel.stop();
  }

  /** Uninstall: the LB table goes with the policy table. */
  destroy(): Promise<void> {
    return this.kernel.destroy();
  }
}
