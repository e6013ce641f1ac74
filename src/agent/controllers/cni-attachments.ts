/**
 * Endpoints a CNI runtime made: the plugin before membrane-cni in the chain
 * (bridge, ptp, ...) wired the container's interface; the agent adopts the
 * host side of its veth as an endpoint and enforces on it. Nothing here
 * creates or deletes a namespace, a link or an address: they are the runtime's.
 * Standalone (no previous plugin): the agent wires the container itself, in cni-standalone.ts.
 *
 *   membrane-cni ADD ──POST /v1/cni/attachments──▶ add():   host veth checked in the node,
 *                                                           record (endpoints/<ns>/<name>, with `cni`),
 *                                                           identity, enforced ──▶ the endpoint's view
 *   membrane-cni DEL ──DELETE .../:containerId/:ifname──▶ del(): record dropped, enforced (idempotent)
 *   membrane-cni CHECK ──GET──▶ check()   GC ──POST /v1/cni/gc──▶ gc(network, valid attachments)
 *
 * Behind `bridge`, the port leaves the bridge and is routed (datapath/cni-bridge.ts), so that
 * its packets reach the node from its own veth: egress and ingress are enforced as after ptp.
 *
 * Fail closed: the record's policy is in the kernel before add() answers, so
 * the runtime starts the container only once it is enforced; a failed add is
 * undone whole (the runtime then calls DEL on the chain and the first plugin unwires).
 */
import { isIfname } from "../../abi/ifname.js";
import { isIP } from "node:net";
import { MembraneError } from "../../errors.js";
import { ip } from "../../datapath/exec.js";
import { forgetBridgePort, restoreBridgePort, routeBridgePort } from "../../datapath/cni-bridge.js";
import { workloadLabels } from "../../labels/k8s.js";
import { KEYS, type EndpointRecordV1 } from "../records.js";
import {
  addStandalone,
  releaseStandalone,
  unwireStandalone,
  type StandaloneDeps,
  type StandaloneView,
} from "./cni-standalone.js";
import { engineSpec, type EndpointView } from "./endpoint-record.js";
import { epKey, validateName } from "./validate.js";

export interface CniAttachRequest {
  containerId: string;
  ifname: string;
  /** The CNI network's name (GC is per network). */
  network: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** Host-side interfaces of the previous plugins' result (no sandbox): the veth is one of them. */
  hostInterfaces: string[];
  /** The container interface's addresses, without prefix length. */
  ips: string[];
  /** CNI_NETNS: a name under /run/netns is kept (L7 bypass resets enter it), another path is not. */
  netns: string;
  /** No previous plugin: the agent wires the container itself (cni-standalone.ts); hostInterfaces and ips empty. */
  standalone?: boolean;
}

/** The node's network namespace (nodeNetns; undefined = the agent's own), IPAM and gateways for standalone. */
export type CniAttachmentsDeps = StandaloneDeps;

interface LinkInfo {
  ifname: string;
  operstate?: string;
  flags?: string[];
  master?: string;
  linkinfo?: { info_kind?: string };
}

const attachmentOf = (r: EndpointRecordV1): string | undefined =>
  r.cni ? `${r.cni.containerId}/${r.cni.ifname}` : undefined;

export class CniAttachments {
  constructor(private readonly d: CniAttachmentsDeps) {}

  private find(containerId: string, ifname: string): EndpointRecordV1 | undefined {
    for (const r of this.d.endpoints.all()) if (attachmentOf(r) === `${containerId}/${ifname}`) return r;
    return undefined;
  }

  add(req: CniAttachRequest): Promise<EndpointView | StandaloneView> {
    const t0 = performance.now();
    return this.d.serial(async () => {
      const t1 = performance.now();
      const where = `attachment ${req.containerId.slice(0, 64)}/${req.ifname}`;
      const refuse = (why: string): MembraneError =>
        new MembraneError("ENDPOINT_INVALID", `Cannot adopt ${where}: ${why}`);
      if (this.find(req.containerId, req.ifname)) throw refuse("it was added before (DEL it first)");
      validateName(req.name, "endpoint name");
      validateName(req.namespace, "namespace");
      workloadLabels({ namespace: req.namespace, labels: req.labels });
      const key = epKey(req.namespace, req.name);
      const byName = [...this.d.endpoints.all()].find((r) => epKey(r.namespace, r.name) === key);
      if (byName && !(await this.dropIfStale(byName))) throw refuse(`endpoint ${key} exists`);
      if (req.standalone === true) {
        if (req.hostInterfaces.length > 0 || req.ips.length > 0)
          throw refuse(
            "a standalone attachment takes no host interfaces or addresses (the agent makes them)",
          );
        if (!isIfname(req.ifname)) throw refuse(`${JSON.stringify(req.ifname)} is not an interface name`);
        if (!req.netns.startsWith("/"))
          throw refuse(`the namespace ${JSON.stringify(req.netns.slice(0, 100))} is not an absolute path`);
        return addStandalone(this.d, req);
      }
      const v4 = req.ips.filter((a) => isIP(a) === 4);
      const v6 = req.ips.filter((a) => isIP(a) === 6);
      if (v4.length !== 1 || v6.length > 1)
        throw refuse(
          `the container interface needs one IPv4 address (and at most one IPv6): got ${JSON.stringify(req.ips)}`,
        );
      for (const a of req.ips) {
        const owner = this.d.endpoints.recordByIp(a);
        if (owner && !(await this.dropIfStale(owner)))
          throw refuse(`address ${a} belongs to another endpoint`);
      }
      const { host, bridge } = await this.hostVeth(req.hostInterfaces, refuse);
      if ([...this.d.endpoints.all()].some((r) => r.hostIfname === host))
        throw refuse(`interface ${host} is another endpoint's`);
      // Behind `bridge`: the port becomes a routed link of its own, so the endpoint's dispatch sees it.
      const port =
        bridge !== undefined
          ? { host, bridge, ipv4: v4[0] ?? "", ...(v6[0] !== undefined ? { ipv6: v6[0] } : {}) }
          : undefined;
      const peers = port ? this.routedPeers(port.bridge) : [];
      if (port) await routeBridgePort(port, this.d.nodeNetns, peers);
      const t2 = performance.now();
      const rec: EndpointRecordV1 = {
        v: 1,
        name: req.name,
        namespace: req.namespace,
        labels: req.labels,
        id: this.d.endpoints.reserveId(),
        netns: /^\/run\/netns\/[A-Za-z0-9_.-]{1,200}$/.test(req.netns)
          ? req.netns.slice("/run/netns/".length)
          : "",
        hostIfname: host,
        ipv4: v4[0] ?? "",
        ...(v6[0] !== undefined ? { ipv6: v6[0] } : {}),
        cni: {
          containerId: req.containerId,
          ifname: req.ifname,
          network: req.network,
          ...(bridge !== undefined ? { bridge, routed: true as const } : {}),
        },
      };
      const engine = this.d.engine();
      try {
        await this.d.store.put(KEYS.endpoints + key, JSON.stringify(rec));
        this.d.endpoints.put(key, rec);
        engine.upsertEndpoint(engineSpec(rec));
        this.d.endpoints.revisions.bump();
        await this.d.enforce();
      } catch (e) {
        this.d.endpoints.revisions.fail(e);
        this.d.endpoints.drop(key);
        engine.deleteEndpoint(rec.namespace, rec.name);
        await this.d.store.delete(KEYS.endpoints + key).catch(() => undefined);
        await this.d.enforce().catch(() => undefined);
        if (port) await restoreBridgePort(port, this.d.nodeNetns, peers);
        throw e;
      } finally {
        this.d.endpoints.releaseId(rec.id); // recorded (byId has it) or undone
      }
      const ms = (a: number, b: number): number => Math.round((b - a) * 10) / 10;
      const t3 = performance.now();
      this.d.logger.info(
        { endpoint: key, hostIfname: host, queuedMs: ms(t0, t1), linkMs: ms(t1, t2), enforceMs: ms(t2, t3) },
        "cni endpoint adopted",
      );
      return this.d.endpoints.view(rec);
    });
  }

  /** Forgets an attachment; one never added (or already deleted) is no error (SPEC.md: DEL is idempotent). */
  del(containerId: string, ifname: string): Promise<{ deleted: boolean }> {
    return this.d.serial(async () => {
      const rec = this.find(containerId, ifname);
      if (!rec) return { deleted: false };
      await this.forget(rec);
      return { deleted: true };
    });
  }

  /** The endpoint of an attachment, after checking that its host veth is still there and up. */
  check(containerId: string, ifname: string): Promise<EndpointView> {
    return this.d.serial(async () => {
      const rec = this.find(containerId, ifname);
      if (!rec)
        throw new MembraneError(
          "ENDPOINT_NOT_FOUND",
          `Cannot check attachment ${containerId.slice(0, 64)}/${ifname}: the agent has no endpoint for it`,
        );
      const l = await this.link(rec.hostIfname);
      if (!l || !(l.flags ?? []).includes("UP"))
        throw new MembraneError(
          "NETNS_FAILED",
          `Cannot check endpoint ${rec.namespace}/${rec.name}: its host interface ${rec.hostIfname} is ${l ? "down" : "gone"}`,
        );
      return this.d.endpoints.view(rec);
    });
  }

  /** Forgets the attachments of `network` that are not in `valid` (SPEC.md GC); says which. */
  gc(
    network: string,
    valid: readonly { containerID: string; ifname: string }[],
  ): Promise<{ deleted: string[] }> {
    return this.d.serial(async () => {
      const keep = new Set(valid.map((a) => `${a.containerID}/${a.ifname}`));
      const stale = [...this.d.endpoints.all()].filter(
        (r) => r.cni?.network === network && !keep.has(attachmentOf(r) ?? ""),
      );
      for (const r of stale) await this.forget(r);
      return { deleted: stale.map((r) => `${r.namespace}/${r.name}`) };
    });
  }

  /**
   * A CNI endpoint whose host veth is gone lost its container without a DEL reaching the agent
   * (the agent was down, the runtime gave up): forgotten, so that its name and address can be
   * used again. Returns whether it was. Any other endpoint stays.
   */
  private async dropIfStale(rec: EndpointRecordV1): Promise<boolean> {
    if (!rec.cni || (await this.link(rec.hostIfname)) !== undefined) return false;
    this.d.logger.warn(
      { endpoint: epKey(rec.namespace, rec.name), hostIfname: rec.hostIfname },
      "stale cni endpoint dropped",
    );
    await this.forget(rec);
    return true;
  }

  private async forget(rec: EndpointRecordV1): Promise<void> {
    const key = epKey(rec.namespace, rec.name);
    const standalone = rec.cni?.standalone === true;
    // The veth first: a failure leaves the record, so that the runtime's retried DEL finds it again.
    if (standalone) await unwireStandalone(this.d, rec);
    await this.d.store.delete(KEYS.endpoints + key);
    this.d.endpoints.drop(key);
    this.d.engine().deleteEndpoint(rec.namespace, rec.name);
    this.d.endpoints.revisions.bump();
    await this.d.enforce();
    if (standalone) await releaseStandalone(this.d, rec);
    const br = rec.cni?.routed === true ? rec.cni.bridge : undefined;
    if (br !== undefined && rec.ipv6 !== undefined)
      await forgetBridgePort(rec.ipv6, this.d.nodeNetns, this.routedPeers(br));
    this.d.logger.info({ endpoint: key, containerId: rec.cni?.containerId }, "cni endpoint released");
  }

  /** The host veths and IPv6 addresses of the routed ports of `bridge` (cni-bridge.ts). */
  private routedPeers(bridge: string): { host: string; ipv6?: string }[] {
    return [...this.d.endpoints.all()]
      .filter((r) => r.cni?.routed === true && r.cni.bridge === bridge)
      .map((r) => ({ host: r.hostIfname, ...(r.ipv6 !== undefined ? { ipv6: r.ipv6 } : {}) }));
  }

  /** The one host-side veth among the previous result's host interfaces (bridges and others skipped). */
  private async hostVeth(
    names: readonly string[],
    refuse: (why: string) => MembraneError,
  ): Promise<{ host: string; bridge?: string }> {
    const veths: LinkInfo[] = [];
    for (const n of names) {
      if (!isIfname(n)) throw refuse(`${JSON.stringify(n.slice(0, 20))} is not an interface name`);
      const l = await this.link(n);
      if (l?.linkinfo?.info_kind === "veth") veths.push(l);
    }
    if (veths.length !== 1)
      throw refuse(
        `the previous plugin's result names ${veths.length} host veths in the node (${JSON.stringify(names)}); membrane-cni chains after a plugin that makes one veth (bridge, ptp)`,
      );
    const v = veths[0] as LinkInfo;
    return { host: v.ifname, ...(v.master !== undefined ? { bridge: v.master } : {}) };
  }

  private async link(name: string): Promise<LinkInfo | undefined> {
    const out = await ip(["-j", "-d", "link", "show", "dev", name], this.d.nodeNetns).catch(() => undefined);
    if (out === undefined) return undefined;
    return (JSON.parse(out) as LinkInfo[])[0];
  }
}
