/**
 * Gateway API and Ingress resources (src/gateway): stored under
 * `gateway/<Kind>/<namespace>/<name>`, compiled for their status, and served
 * by the gateway process in its own namespace (src/gateway/ingress-netns.ts),
 * whose address the ipcache maps to the reserved `ingress` identity (both
 * addresses on a dual-stack node: the gateway reaches each backend from the
 * address of the backend's family, and a Gateway without spec.addresses is
 * served on both, IPv4 first in its status). With a LoadBalancer pool each
 * Gateway naming no address gets its own (agent/gateway-addresses.ts).
 *
 *   apply -f (parse whole, store) --> inputs (resources, services -> endpoint
 *   addresses, namespace labels, the gateway address) --> GatewayRunner.push
 *   services and endpoints change --> the inputs are compared every second and
 *   pushed again when they differ
 *   Gateways' own addresses: reserved and put on the namespace before the push,
 *   released after the push that stops serving them; taken off the namespace too when they are no
 *   longer this node's to serve (cut off from etcd in cluster mode: GatewayAddresses.fenced)
 */
import { MembraneError } from "../../errors.js";
import { GatewayCertificates } from "../../gateway/certs.js";
import { compileGateways, type ServicePortInfo } from "../../gateway/compile.js";
import type { GatewayEvent } from "../../gateway/exchange.js";
import { gatewaysWithoutAddress } from "../../gateway/dual-stack.js";
import { ensureIngressNetns, setGatewayAddresses } from "../../gateway/ingress-netns.js";
import { worldOf } from "../../gateway/world.js";
import { nextGeneration } from "../../gateway/meta.js";
import { resourceKey, type GatewayResource } from "../../gateway/model.js";
import { parseGatewayResources } from "../../gateway/parse.js";
import type { GatewayInputs } from "../../gateway/protocol.js";
import { GatewayRunner } from "../../gateway/runner.js";
import type { ServiceSpec } from "../../policy/query.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import type { GatewayAddresses } from "../gateway-addresses.js";
import type { EndpointView } from "./endpoint-record.js";

export const GATEWAY_KEY = "gateway/";

export interface GatewaysDeps extends ControllerDeps {
  readonly secretsDir: string;
  readonly netns: string;
  readonly nodeNetns?: string;
  readonly nodeGateway: string;
  /** The gateway addresses (allocated once from the pod CIDRs, stable across restarts; IPv6 on dual stack). */
  readonly address: () => Promise<{ readonly ipv4: string; readonly ipv6?: string }>;
  readonly services: () => readonly ServiceSpec[];
  /** `v1` Services (membrane apply): ready endpoint addresses and what each port says. */
  readonly lbServices?: () => Readonly<Record<string, GatewayBackendService>>;
  readonly endpoints: () => readonly EndpointView[];
  readonly namespaceLabels: () => Record<string, Record<string, string>>;
  readonly onEvent?: (e: GatewayEvent, address: string) => void;
  /** Each Gateway's own address from the LoadBalancer pool (absent: all share the node's). */
  readonly own?: GatewayAddresses;
}

export interface GatewayBackendService {
  readonly addresses: readonly string[];
  readonly ports: Readonly<Record<string, ServicePortInfo>>;
}

export interface GatewayApplyReport {
  readonly resources: readonly {
    kind: string;
    namespace?: string;
    name: string;
    status: "created" | "configured" | "unchanged" | "deleted";
  }[];
}

export class GatewaysController implements Controller {
  readonly name = "gateways";
  readonly revisions = new Revisions();
  private readonly known = new Map<string, GatewayResource>();
  private runner: GatewayRunner | undefined;
  private addr: string | undefined;
  private addr6: string | undefined;
  private lastPushed = "";
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** One sync at a time: reservations, the namespace's addresses and the push stay in order. */
  private syncing: Promise<void> = Promise.resolve();
  /** The Gateways' own addresses the gateway namespace holds (a failed `ip` is tried again next sync). */
  private readonly onNamespace = new Set<string>();
  private readonly certs: GatewayCertificates;

  constructor(private readonly d: GatewaysDeps) {
    this.certs = new GatewayCertificates(d.secretsDir);
  }

  async restore(): Promise<void> {
    for (const kv of (await this.d.store.list(GATEWAY_KEY)).kvs) {
      try {
        const r = JSON.parse(kv.value) as GatewayResource;
        this.known.set(resourceKey(r), r);
      } catch (e) {
        this.d.logger.error(
          { key: kv.key, err: String(e) },
          "stored gateway resource cannot be read; skipped",
        );
      }
    }
  }

  /** Sets up the gateway namespace and address (identity ingress), starts the gateway process. */
  async start(): Promise<void> {
    await this.restore();
    const { ipv4: address, ipv6: address6 } = await this.d.address();
    this.addr = address;
    this.addr6 = address6;
    const v6 = address6 !== undefined ? { address6 } : {};
    await ensureIngressNetns({
      ...this.link(),
      address,
      ...v6,
      nodeGateway: this.d.nodeGateway,
    });
    // What this node's Gateways held before a restart stays theirs (put on the namespace by the first sync).
    await this.d.own?.load();
    this.d.own?.onChange(() => void this.refresh().catch(() => undefined)); // a full pool freed: try at once
    await this.d.serial(async () => {
      this.d.engine().setNodeAddress(address, "ingress");
      if (address6 !== undefined) this.d.engine().setNodeAddress(address6, "ingress");
      await this.d.enforce();
    });
    this.runner = new GatewayRunner({
      netns: this.d.netns,
      secretsDir: this.d.secretsDir,
      localAddress: address,
      ...(address6 !== undefined ? { localAddress6: address6 } : {}),
      onEvent: (e) => this.d.onEvent?.(e, address),
      logger: this.d.logger,
      onExit: (code) => {
        if (!this.stopping)
          this.d.logger.error(
            { code },
            "gateway process exited; its listeners are down until the agent restarts",
          );
      },
    });
    this.runner.start();
    await this.sync(true);
    // A failing sync (the store, an `ip` command) is tried again each second; said once until it changes.
    let lastErr = "";
    this.timer = setInterval(
      () =>
        void this.sync(false).then(
          () => (lastErr = ""),
          (e: unknown) => {
            const err = e instanceof Error ? e.message : String(e);
            // The hint says what to do (e.g. the grant a refused reservation needs, gateway-addresses.ts).
            const hint = e instanceof MembraneError ? e.hint : undefined;
            if (err !== lastErr)
              this.d.logger.error(
                { err, ...(hint ? { hint } : {}) },
                "gateway not synced; tried again each second",
              );
            lastErr = err;
          },
        ),
      1000,
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    await this.runner?.stop();
    await this.d.own?.stop();
  }

  private link(): { netns: string; nodeNetns?: string; hostIf: string } {
    return {
      netns: this.d.netns,
      ...(this.d.nodeNetns !== undefined ? { nodeNetns: this.d.nodeNetns } : {}),
      hostIf: "mbrgw0",
    };
  }

  get address(): string | undefined {
    return this.addr;
  }

  /** The gateway's IPv6 address (dual stack). */
  get address6(): string | undefined {
    return this.addr6;
  }

  private inputs(): GatewayInputs {
    const eps = this.d.endpoints();
    const services: Record<string, string[]> = {};
    for (const s of this.d.services()) {
      const sel = s.selector;
      services[`${s.namespace}/${s.name}`] = sel
        ? eps
            .filter(
              (e) => e.namespace === s.namespace && Object.entries(sel).every(([k, v]) => e.labels[k] === v),
            )
            .map((e) => e.ipv4 || e.ipv6 || "")
            .filter((a) => a !== "")
        : [...(s.ips ?? [])];
    }
    const servicePorts: Record<string, Record<string, ServicePortInfo>> = {};
    for (const [key, s] of Object.entries(this.d.lbServices?.() ?? {})) {
      services[key] = [...s.addresses];
      servicePorts[key] = { ...s.ports };
    }
    const own = this.d.own?.assigned(gatewaysWithoutAddress([...this.known.values()]));
    return {
      resources: [...this.known.values()],
      ...(own ? { gatewayAddresses: own } : {}),
      ...(this.d.own?.refused !== undefined ? { gatewayAddressesRefused: this.d.own.refused } : {}),
      services,
      servicePorts,
      namespaceLabels: this.d.namespaceLabels(),
      addresses: [this.addr, this.addr6].filter((a): a is string => a !== undefined),
      policyRevision: this.d.engine().revision,
    };
  }

  /** Pushes what changed now (instead of within the next second). */
  refresh(): Promise<void> {
    return this.sync(false);
  }

  /** Pushes the inputs when they changed (or always); logs what the process could not serve. */
  private sync(always: boolean): Promise<void> {
    const next = this.syncing.then(() => this.syncNow(always));
    this.syncing = next.catch(() => undefined);
    return next;
  }

  private async syncNow(always: boolean): Promise<void> {
    if (!this.runner) return;
    const want = gatewaysWithoutAddress([...this.known.values()]);
    // A store error (cut off from etcd) is said after the rest: what is served and on the namespace
    // still follows what is held now, in particular a fenced node's addresses go (gateway-addresses.ts).
    let storeErr: unknown;
    // Make before break: a new Gateway's address is reserved and on the namespace before the
    // process is told to listen on it; a gone Gateway's is released once the process stopped.
    await this.d.own?.reserve(want).catch((e: unknown) => (storeErr ??= e));
    const held = Object.values(this.d.own?.assigned(want) ?? {}).flat();
    const add = held.filter((a) => !this.onNamespace.has(a));
    if (add.length > 0) {
      await setGatewayAddresses(this.link(), add, []);
      for (const a of add) this.onNamespace.add(a);
    }
    const inputs = this.inputs();
    const text = JSON.stringify(inputs);
    if (always || text !== this.lastPushed) {
      this.lastPushed = text;
      const r = await this.runner.push(inputs);
      if (r.error) this.d.logger.error({ err: r.error }, "gateway listeners not all served");
    }
    // Released, and those no longer ours to serve (cut off from etcd, its lease ended: own.fenced).
    await this.d.own?.release(want).catch((e: unknown) => (storeErr ??= e));
    const now = new Set(Object.values(this.d.own?.assigned(want) ?? {}).flat());
    const drop = [...this.onNamespace].filter((a) => !now.has(a));
    if (drop.length > 0) {
      await setGatewayAddresses(this.link(), [], drop);
      for (const a of drop) this.onNamespace.delete(a);
    }
    if (storeErr !== undefined) throw storeErr;
  }

  apply(text: string, file: string, del = false): Promise<GatewayApplyReport> {
    return this.d.serial(async () => {
      const resources = parseGatewayResources(text, file);
      const out: GatewayApplyReport["resources"][number][] = [];
      for (const given of resources) {
        const key = resourceKey(given);
        const old = this.known.get(key);
        const r = nextGeneration(given, old);
        const value = JSON.stringify(r);
        const row = {
          kind: r.kind,
          ...(r.kind === "GatewayClass" ? {} : { namespace: r.meta.namespace }),
          name: r.meta.name,
        };
        if (del) {
          if (!old) continue;
          await this.d.store.delete(GATEWAY_KEY + key);
          this.known.delete(key);
          out.push({ ...row, status: "deleted" });
          continue;
        }
        if (old && JSON.stringify(old) === value) {
          out.push({ ...row, status: "unchanged" });
          continue;
        }
        await this.d.store.put(GATEWAY_KEY + key, value);
        this.known.set(key, r);
        out.push({ ...row, status: old ? "configured" : "created" });
      }
      this.revisions.bump();
      await this.sync(true).catch((e: unknown) => {
        const hint = e instanceof MembraneError ? e.hint : undefined;
        throw new MembraneError(
          "API_FAILED",
          `Cannot program the gateway: ${e instanceof Error ? e.message : String(e)}`,
          hint !== undefined ? { hint } : {},
        );
      });
      return { resources: out };
    });
  }

  /** Every resource with its status (as Kubernetes shows it: `status` beside `spec`). */
  list(kinds?: readonly string[]): { kind: string; namespace?: string; name: string; status: unknown }[] {
    const { status } = compileGateways(worldOf(this.inputs(), this.certs, new Date().toISOString()));
    return [...this.known.values()]
      .filter((r) => !kinds || kinds.includes(r.kind))
      .map((r) => {
        const key = resourceKey(r);
        const st =
          r.kind === "Gateway"
            ? status.gateways.get(key)
            : r.kind === "HTTPRoute" || r.kind === "GRPCRoute"
              ? status.routes.get(key)
              : r.kind === "GatewayClass"
                ? status.gatewayClasses.get(key)
                : r.kind === "Ingress"
                  ? status.ingresses.get(key)
                  : undefined;
        return {
          kind: r.kind,
          ...(r.kind === "GatewayClass" ? {} : { namespace: r.meta.namespace }),
          name: r.meta.name,
          status: st ?? {},
        };
      });
  }
}
