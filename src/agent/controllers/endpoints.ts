/**
 * Local endpoints: a network namespace and a veth each, an address from IPAM, a record in the
 * store (`endpoints/<namespace>/<name>`), labels the engine turns into an identity. Fail closed:
 * a new endpoint's policy is in the kernel before its veth exists, so it is never open while its
 * policy is computed; a failed create is undone whole.
 */
import { MembraneError } from "../../errors.js";
import {
  deleteEndpoint,
  prepareEndpoint,
  reconcileEndpoint,
  type EndpointParams,
  type NodeNetns,
} from "../../datapath/endpoint.js";
import { createEndpoints } from "../../datapath/endpoint-batch.js";
import { closeNodeLinks } from "../../datapath/node-links.js";
import type { EndpointPool } from "../../datapath/endpoint-pool.js";
import { intactEndpoints, verifyEndpoints, verifyNode } from "../../datapath/node-adopt.js";
import { stopNetnsProcesses } from "../../datapath/workload.js";
import { workloadLabels } from "../../labels/k8s.js";
import type { NamedPort } from "../../policy/query.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import type { LocalEndpoint } from "../desired.js";
import type { Ipam } from "../ipam.js";
import { KEYS, type EndpointRecordV1 } from "../records.js";
import { endpointPool, writeRecord } from "./endpoints-pool.js";
import { CreatePhases } from "./endpoints-trace.js";
import { egressView, engineSpec, localEndpoint, type EndpointView } from "./endpoint-record.js";
import { epKey, validateName, validatePorts } from "./validate.js";

export type { EndpointView } from "./endpoint-record.js";

export interface EndpointsDeps extends ControllerDeps {
  readonly ipam: Ipam;
  /** Prefix of the endpoint namespaces this agent creates (unique per node). */
  readonly netnsPrefix: string;
  /** The node's network namespace; undefined = the namespace the agent runs in. */
  readonly nodeNetns: string | undefined;
  /** The node's side (bridge, gateways), once the agent has started. */
  readonly node: () => NodeNetns | undefined;
  /** Namespaces made ahead of time (endpoint-pool.ts; default 0 = none). */
  readonly poolSize?: number;
  /** Resolves when the work queue has no work: the background check of adopted endpoints waits for it. */
  readonly idle?: () => Promise<void>;
}

export interface CreateEndpointRequest {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  ipv4?: string;
  ipv6?: string;
  /** Named container ports, for policies that name ports. */
  ports?: readonly NamedPort[];
}

export class EndpointsController implements Controller {
  readonly name = "endpoints";
  readonly revisions = new Revisions();
  private readonly records = new Map<string, EndpointRecordV1>();
  /** local(), until put/drop changes a record. */
  private localList: LocalEndpoint[] | undefined;
  /** Indexes of `records` for the per-flow lookups; changed only through put/drop. */
  private readonly byId = new Map<number, EndpointRecordV1>();
  private readonly byIp = new Map<string, EndpointRecordV1>();
  /** Endpoints adopted at start whose insides are checked in the background (verifyAdopted). */
  private unverified: EndpointParams[] = [];
  private readonly verifyAbort = new AbortController();
  private verifying: Promise<void> | undefined;
  private readonly pool: EndpointPool;

  constructor(private readonly d: EndpointsDeps) {
    this.pool = endpointPool(d, (id) => this.byId.has(id));
  }

  get size(): number {
    return this.records.size;
  }

  all(): IterableIterator<EndpointRecordV1> {
    return this.records.values();
  }

  recordById(id: number): EndpointRecordV1 | undefined {
    return this.byId.get(id);
  }

  recordByIp(ip: string): EndpointRecordV1 | undefined {
    return this.byIp.get(ip);
  }

  /** The endpoints as the datapath compiler needs them. */
  local(): readonly LocalEndpoint[] {
    // The same array until a record changes: DesiredBuilder then skips comparing the endpoints.
    return (this.localList ??= [...this.records.values()].map(localEndpoint));
  }

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(KEYS.endpoints)).kvs;
    for (const kv of kvs) {
      const rec = JSON.parse(kv.value) as EndpointRecordV1;
      this.put(epKey(rec.namespace, rec.name), rec);
      this.d.engine().upsertEndpoint(engineSpec(rec));
    }
    if (kvs.length > 0) this.revisions.bump();
  }

  /**
   * A (re)started agent's endpoints, after their policy is in the kernel:
   * intact ones (namespace present, host veth present and up: one readdir
   * and one rtnetlink link dump, no process) are adopted as they are; the
   * others (a cold start, a reboot) are created in a batch (endpoint-batch.ts),
   * with progress in the log every `progressEvery`. Failures are logged and
   * recorded as the controller's last error; the rest go on. The intact ones and the node
   * are checked in the background once the API serves (startVerification). CNI ones: the runtime's. */
  async adopt(opts: { concurrency?: number; progressEvery?: number } = {}): Promise<void> {
    const all = [...this.records.values()].filter((r) => !r.cni).map((r) => this.netnsOf(r));
    const [{ intact, missing }] = await Promise.all([
      intactEndpoints(this.d.nodeNetns, all),
      this.d.ipam.warm(),
    ]);
    this.unverified = intact;
    if (missing.length > 0) await this.createMissing(missing, opts);
  }

  private async createMissing(
    missing: EndpointParams[],
    opts: { concurrency?: number; progressEvery?: number },
  ): Promise<void> {
    const log = this.d.logger;
    const every = opts.progressEvery ?? 100;
    let logged = 0;
    log.info({ missing: missing.length, intact: this.unverified.length }, "creating missing endpoints");
    const r = await createEndpoints(missing, {
      concurrency: opts.concurrency ?? 2,
      onProgress: (done, total) => {
        if (Math.floor(done / every) > logged || done === total)
          log.info({ done, total }, "endpoints created");
        logged = Math.floor(done / every);
      },
    });
    for (const f of r.failed) {
      log.error({ endpoint: f.name, err: f.error.message }, "endpoint could not be created");
      this.revisions.fail(f.error);
    }
  }

  /**
   * After start: the node's and the adopted endpoints' insides, checked in the background (one
   * read of the node, verifyAdopted), then the namespace pool filled; stopVerification() ends both.
   */
  startVerification(): void {
    const signal = this.verifyAbort.signal;
    const log = this.d.logger;
    this.verifying = (async () => {
      await new Promise((r) => setImmediate(r)); // after the caller (run.ts: the API is up) returns
      const node = this.d.node();
      if (node && !signal.aborted) {
        // Idempotent repair of the node's basics: no queue; after the changes in hand (a stop ends the wait).
        const stopped = new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
        const missing = await verifyNode(node, () => Promise.race([this.d.yieldToWork?.(), stopped]));
        if (signal.aborted) return;
        if (missing.length > 0) log.warn({ missing }, "node repaired");
      }
      await this.verifyAdopted(signal);
    })().catch((e: unknown) => {
      if (!signal.aborted) log.error({ err: String(e) }, "background verification failed");
    });
    void this.verifying.then(() => void (signal.aborted || this.pool.start())); // after the checks' processes
  }

  /** Ends the background check (agent stop) and lets the node's rtnetlink process go (node-links.ts). */
  async stopVerification(): Promise<void> {
    this.verifyAbort.abort();
    await this.verifying;
    await this.pool.stop();
    closeNodeLinks((ns) => ns === this.d.nodeNetns);
  }

  /** Checks the adopted endpoints' addresses and routes in the background, off the work queue (reads only);
   * one that differs is repaired through the queue with reconcileEndpoint, if it still exists then, and
   * logged. Stops when `signal` is aborted. */
  async verifyAdopted(signal: AbortSignal): Promise<void> {
    const eps = this.unverified;
    this.unverified = [];
    const log = this.d.logger;
    const differed = await verifyEndpoints(
      eps,
      (p, what) =>
        this.d.serial(async () => {
          const rec = [...this.records.values()].find((r) => r.netns === p.netns);
          if (!rec || signal.aborted) return;
          const r = await reconcileEndpoint(this.netnsOf(rec));
          log.warn(
            { endpoint: `${rec.namespace}/${rec.name}`, differed: what, changes: r.changes },
            "endpoint repaired",
          );
        }),
      signal,
      this.d.yieldToWork, // after a restart: never in the way of a change
    );
    if (!signal.aborted) log.info({ checked: eps.length, repaired: differed }, "adopted endpoints verified");
  }

  /** Creates an endpoint; `ipv4` / `ipv6` ask for exact addresses from the pod CIDRs, else IPAM picks. */
  create(req: CreateEndpointRequest): Promise<EndpointView> {
    const ph = new CreatePhases();
    return this.d.serial(async () => {
      ph.mark("queue");
      validateName(req.name, "endpoint name");
      validateName(req.namespace, "namespace");
      const key = epKey(req.namespace, req.name);
      if (this.records.has(key)) {
        throw new MembraneError("ENDPOINT_INVALID", `Cannot create endpoint ${key}: it exists`, {
          hint: "Use `membrane endpoint label` to change its labels.",
        });
      }
      workloadLabels({ namespace: req.namespace, labels: req.labels }); // validates, throws LABEL_INVALID
      validatePorts(req.ports ?? []);
      const t = this.pool.take(); // an id, and its namespace made ahead of time when one is ready
      ph.mark("validate");
      // The addresses are taken in the record's transaction below: one store write per create.
      const lease = await this.d.ipam.plan(key, req).catch((e: unknown) => this.pool.giveBack(t, e));
      const addr = lease.allocation;
      ph.mark("ipam");
      const rec: EndpointRecordV1 = {
        v: 1,
        name: req.name,
        namespace: req.namespace,
        labels: req.labels,
        id: t.id,
        netns: t.netns,
        hostIfname: `mbr${t.id}`,
        ipv4: addr.ipv4,
        ...(addr.ipv6 ? { ipv6: addr.ipv6 } : {}),
        ...(req.ports && req.ports.length > 0 ? { ports: req.ports.map((p) => ({ ...p })) } : {}),
      };
      const engine = this.d.engine();
      // The namespace (no veth: unreachable) is built while the policy goes into the kernel.
      const prepared = ph.time("netns", prepareEndpoint(this.netnsOf(rec), t.fresh));
      prepared.catch(() => undefined); // awaited below; a failure is handled there
      // Record and lease in one transaction, its fsync overlapping the kernel work; the answer waits for it.
      const stored = ph.time("store", writeRecord(this.d.store, lease.txn, key, rec));
      stored.catch(() => undefined); // awaited below; a failure of any step undoes all (below)
      try {
        this.put(key, rec);
        engine.upsertEndpoint(engineSpec(rec));
        this.revisions.bump();
        // Policy in the kernel first, then the veth: never open while being computed.
        await this.d.enforce();
        ph.mark("enforce");
        const ready = await prepared;
        ph.mark("wait-netns");
        await ready.finish();
        ph.mark("veth+sides");
        await stored;
        ph.mark("wait-store");
      } catch (e) {
        await prepared.then(
          (x) => x.abort(),
          () => undefined,
        );
        this.revisions.fail(e);
        this.drop(key);
        // Undone, not a new change: no bump (the error stays until a later change is realized).
        engine.deleteEndpoint(rec.namespace, rec.name);
        await stored.catch(() => undefined); // settled first: a late put must not outlive the delete
        await this.d.store.delete(KEYS.endpoints + key).catch(() => undefined);
        await this.d.ipam.release(key).catch(() => undefined);
        await deleteEndpoint(this.netnsOf(rec)).catch(() => undefined);
        await this.d.enforce().catch(() => undefined);
        throw e;
      } finally {
        this.pool.done(t.id);
      }
      const v = this.view(rec);
      ph.end();
      return v;
    });
  }

  label(
    namespace: string,
    name: string,
    labels: Record<string, string>,
    replace: boolean,
  ): Promise<EndpointView> {
    return this.d.serial(async () => {
      const rec = this.must(namespace, name);
      const next: Record<string, string> = replace ? { ...labels } : { ...rec.labels, ...labels };
      for (const [k, v] of Object.entries(next)) if (v === "") delete next[k]; // k= removes a label
      workloadLabels({ namespace, labels: next });
      const updated: EndpointRecordV1 = { ...rec, labels: next };
      await this.d.store.put(KEYS.endpoints + epKey(namespace, name), JSON.stringify(updated));
      this.put(epKey(namespace, name), updated);
      this.d.engine().upsertEndpoint(engineSpec(updated));
      this.revisions.bump();
      await this.d.enforce();
      return this.view(updated);
    });
  }

  /** Stops the endpoint's processes (SIGTERM, `graceMs`, SIGKILL) and deletes it; says how many it stopped. */
  async delete(namespace: string, name: string, graceMs = 0): Promise<{ stopped: number }> {
    // The grace period runs outside the serial section: a workload slow to exit holds up no other request.
    if (this.must(namespace, name).cni) throw new MembraneError("ENDPOINT_INVALID", `Cannot delete ${namespace}/${name}: a CNI runtime's (remove its container)`); // prettier-ignore
    const early = await stopNetnsProcesses(this.must(namespace, name).netns, graceMs);
    return this.d.serial(async () => {
      const rec = this.must(namespace, name);
      const late = await deleteEndpoint(this.netnsOf(rec)).catch((e: unknown) => {
        this.revisions.fail(e);
        throw e;
      });
      await this.d.store.delete(KEYS.endpoints + epKey(namespace, name));
      this.drop(epKey(namespace, name));
      this.d.engine().deleteEndpoint(namespace, name);
      this.revisions.bump();
      await this.d.enforce();
      await this.d.ipam.release(epKey(namespace, name));
      return { stopped: early + late };
    });
  }

  list(): EndpointView[] {
    return [...this.records.values()].map((r) => this.view(r));
  }

  get(namespace: string, name: string): EndpointView {
    return this.view(this.must(namespace, name));
  }

  private must(namespace: string, name: string): EndpointRecordV1 {
    const rec = this.records.get(epKey(namespace, name));
    if (!rec) {
      throw new MembraneError("ENDPOINT_NOT_FOUND", `Cannot find endpoint ${namespace}/${name}`, {
        hint: "`membrane get endpoints` lists them.",
      });
    }
    return rec;
  }

  put(key: string, rec: EndpointRecordV1): void {
    this.drop(key);
    this.localList = undefined;
    this.records.set(key, rec);
    this.byId.set(rec.id, rec);
    this.byIp.set(rec.ipv4, rec);
    if (rec.ipv6) this.byIp.set(rec.ipv6, rec);
  }

  drop(key: string): void {
    const old = this.records.get(key);
    if (!old) return;
    this.localList = undefined;
    this.records.delete(key);
    this.byId.delete(old.id);
    this.byIp.delete(old.ipv4);
    if (old.ipv6) this.byIp.delete(old.ipv6);
  }

  view(rec: EndpointRecordV1): EndpointView {
    const pol = this.d.engine().endpointPolicy(rec.namespace, rec.name);
    return {
      name: rec.name,
      namespace: rec.namespace,
      id: rec.id,
      identity: pol.endpoint.identity.id,
      labels: rec.labels,
      ipv4: rec.ipv4,
      ...(rec.ipv6 ? { ipv6: rec.ipv6 } : {}),
      netns: rec.netns,
      hostIfname: rec.hostIfname,
      ...(rec.ports && rec.ports.length > 0 ? { ports: rec.ports.map((p) => ({ ...p })) } : {}),
      ingress: { enforced: pol.ingress.enforced, entries: pol.ingress.mapState.size },
      egress: egressView(rec, pol.egress.enforced, pol.egress.mapState.size),
      policyRevision: pol.revision,
    };
  }

  /** An id for an endpoint made elsewhere (CNI), held from the pool's fill until releaseId(id). */
  reserveId(): number {
    return this.pool.take({ idOnly: true }).id;
  }
  releaseId(id: number): void {
    this.pool.done(id);
  }

  private netnsOf(rec: EndpointRecordV1): EndpointParams {
    const node = this.d.node();
    if (!node) throw new MembraneError("NETNS_FAILED", "Cannot manage endpoints: the agent has not started");
    return {
      node,
      name: rec.name,
      netns: rec.netns,
      hostIfname: rec.hostIfname,
      ipv4: rec.ipv4,
      ...(rec.ipv6 ? { ipv6: rec.ipv6 } : {}),
    };
  }
}
