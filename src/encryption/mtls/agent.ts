/**
 * The mTLS node tunnel (`membrane agent --encryption mtls-tunnel`, cluster mode), ztunnel-style:
 * pods' TCP connections to other nodes' pods are carried by this node's tunnel process to the
 * peer node's tunnel over TLS 1.3, one HTTP/2 CONNECT stream per connection (Istio's HBONE),
 * each TLS session presenting the SOURCE identity's X.509-SVID; the receiving tunnel learns the
 * identity from the certificate and its kernel policy judges the connection with it.
 *
 *   start():  encryption table (strict drop, then the redirect) --> this node's CA --> tunnel process
 *   record(): {type: mtls-tunnel, port, roots} --> this node's registry entry (peers trust these roots)
 *   attach(view): NodeView --> peers {node, address, port, roots, pod CIDRs} --> the tunnel
 *   the tunnel asks: identity of a local pod address --> engine's ipcache --> SVID (signed here)
 *
 *   pod A (n1) --DNAT--> tunnel n1 ==TLS 1.3, client cert spiffe://td/identity/A, h2 CONNECT B==>
 *     tunnel n2 (validates against n1's roots) --socket mark A--> out_c --> B's ingress policy (A)
 *
 * Trust: each node's CA root key stays in its own 0600 file (spiffe/ca-file.ts); only root
 * certificates are published. The CA signs identity SVIDs only for identities of this node's own
 * pod addresses, so a node can present only identities it hosts. The servers present the node's
 * SVID, spiffe://<td>/node/<name>: a session carries streams to any pod of that node, and the
 * destination's identity is what the receiving node's policy already knows from its own endpoint.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Logger } from "pino";
import type { NodeEncryptionV1, NodeMtlsTunnelV1 } from "../../cluster/keys.js";
import type { NodeView } from "../../cluster/node-view.js";
import { addrString, containsPrefix, hostPrefix, parseAddr, parsePrefix, prefixString, type Prefix } from "../../labels/cidr.js"; // prettier-ignore
import { CaFile } from "../../spiffe/ca-file.js";
import { SpiffeCa } from "../../spiffe/ca.js";
import { exportPkcs8, newKeyPair } from "../../spiffe/certs.js";
import { identitySpiffeId } from "../../spiffe/id.js";
import type { MtlsTunnelOptions } from "../options.js";
import { applyEncryptTable } from "../strict.js";
import type { EncryptionAgent } from "../mode.js";
import type { EncryptionStatus, PeerStatus } from "../status.js";
import { nodeSpiffeId } from "./creds.js";
import { TunnelOrigins, type Origin } from "./origins.js";
import { TunnelSupervisor } from "./supervisor.js";
import type { TunnelPeer, WireCreds } from "./wire.js";

export interface MtlsTunnelParams {
  readonly node: string;
  readonly netns?: string;
  readonly stateDir: string;
  /** The tunnel's TCP port on the node's underlay address. */
  readonly port: number;
  readonly tunnel: MtlsTunnelOptions;
  readonly nodeIp: string;
  readonly localCidrs: readonly string[];
  readonly clusterCidrs: readonly string[];
  readonly strictCidrs?: readonly string[];
  readonly logGroup: number;
  readonly logger: Logger;
  /** The identity the agent gives an address now (its engine's ipcache). */
  readonly identityOf: (ip: string) => number | undefined;
  /** Whether `node` hosts an endpoint of `identity` (the cluster's remote endpoints). */
  readonly hosts: (node: string, identity: number) => boolean;
  readonly connectTimeoutMs?: number;
}

const MIN_POD_IDENTITY = 256;

export class MtlsTunnelAgent implements EncryptionAgent {
  readonly mode = "mtls-tunnel" as const;
  /** No interface: pods' TCP is redirected in nftables (strict.ts), not routed to a device. */
  readonly ifname = "";
  private ca: SpiffeCa | undefined;
  private sup: TunnelSupervisor | undefined;
  private view: NodeView | undefined;
  private peers: TunnelPeer[] = [];
  private readonly svids = new Map<number, Promise<WireCreds>>();
  private readonly local: Prefix[];
  /** Where the connections this node's tunnel carries to its pods come from (flows). */
  private readonly origins: TunnelOrigins;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly p: MtlsTunnelParams) {
    this.local = p.localCidrs.map((c) => parsePrefix(c)).filter((c): c is Prefix => c !== undefined);
    this.log = p.logger.child({ part: "mtls-tunnel" });
    this.origins = new TunnelOrigins({ identityOf: p.identityOf, local: this.local });
  }

  /**
   * Strict drop and redirect first, then the CA (record() needs its roots). The process starts in
   * attach(): it listens on the pod gateway address, which exists once the agent adopted the node.
   * Until then, redirected connections find no listener and are reset (fail closed).
   */
  async start(): Promise<void> {
    const gw = gateway4(this.p.localCidrs);
    await applyEncryptTable({
      ...(this.p.netns ? { netns: this.p.netns } : {}),
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      tunnel: { redirect4: gw, port: this.p.tunnel.redirectPort, clusterCidrs: this.p.clusterCidrs },
      localCidrs: this.p.localCidrs,
      logGroup: this.p.logGroup,
    });
    const dir = join(this.p.stateDir, "mtls-tunnel");
    this.ca = await SpiffeCa.open({ trustDomain: this.p.tunnel.trustDomain, file: new CaFile(dir) });
    this.sup = new TunnelSupervisor({
      ...(this.p.netns ? { netns: this.p.netns } : {}),
      gid: this.p.tunnel.gid,
      config: {
        trustDomain: this.p.tunnel.trustDomain,
        node: this.p.node,
        redirect: { host: gw, port: this.p.tunnel.redirectPort },
        listen: { host: this.p.nodeIp, port: this.p.port },
        localCidrs: this.p.localCidrs,
        uid: this.p.tunnel.uid,
        connectTimeoutMs: this.p.connectTimeoutMs ?? 5000,
      },
      logger: this.log,
      nodeCreds: () => this.issue(nodeSpiffeId(this.p.tunnel.trustDomain, this.p.node)),
      source: (ip) => this.source(ip),
      hosts: (node, identity) => this.p.hosts(node, identity),
      origin: (o) => {
        if (!this.origins.note(o))
          this.log.warn({ source: o.source, identity: o.identity }, "mTLS tunnel: a peer named a source pod that does not hold the certificate's identity"); // prettier-ignore
      },
    });
    // Renew the node's SVID at half life (identity SVIDs renew when asked for past theirs).
    const every = Math.max(10_000, this.ca.svidTtlMs / 2);
    this.timer = setInterval(() => void this.renewNode(), every);
    this.timer.unref();
    this.log.info({ port: this.p.port, redirectPort: this.p.tunnel.redirectPort, strict: this.p.strictCidrs !== undefined }, "mTLS node tunnel started"); // prettier-ignore
  }

  private async renewNode(): Promise<void> {
    try {
      await this.ca?.tick();
      this.sup?.setNodeCreds(await this.issue(nodeSpiffeId(this.p.tunnel.trustDomain, this.p.node)));
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "mTLS tunnel: the node's SVID could not be renewed");
    }
  }

  /** A fresh key pair and an SVID for `spiffeId`, signed by this node's CA. */
  private async issue(spiffeId: string): Promise<WireCreds> {
    if (!this.ca) throw new Error("the tunnel's CA is not open");
    const keys = await newKeyPair();
    const { leaf, chain } = await this.ca.sign(spiffeId, keys.publicKey);
    const nb = Date.now();
    return {
      chain: chain.map((d) => d.toString("base64")),
      key: (await exportPkcs8(keys.privateKey)).toString("base64"),
      renewAt: nb + (leaf.notAfter.getTime() - nb) / 2,
    };
  }

  /** The identity of a pod address of THIS node and its SVID; refuses any other address. */
  private async source(ip: string): Promise<{ identity: number; creds: WireCreds }> {
    const a = parseAddr(ip);
    const host: Prefix | undefined = a && {
      family: a.family,
      addr: a.value,
      bits: a.family === 4 ? 32 : 128,
    };
    if (!host || !this.local.some((c) => containsPrefix(c, host)))
      throw new Error(`${ip} is not a pod address of this node`);
    const identity = this.p.identityOf(ip);
    if (identity === undefined || identity < MIN_POD_IDENTITY)
      throw new Error(`${ip} has no workload identity (${identity ?? "none"})`);
    const have = this.svids.get(identity);
    const held = have && (await have.catch(() => undefined));
    let p = this.svids.get(identity);
    if (!p || (p === have && (!held || held.renewAt <= Date.now()))) {
      const fresh = this.issue(identitySpiffeId(this.p.tunnel.trustDomain, identity));
      this.svids.set(identity, fresh);
      fresh.catch(() => this.svids.get(identity) === fresh && this.svids.delete(identity));
      p = fresh;
    }
    return { identity, creds: await p };
  }

  record(): NodeMtlsTunnelV1 {
    if (!this.ca) throw new Error("MtlsTunnelAgent.record() before start()");
    const roots = this.ca.rootsView();
    const newest = roots
      .map((r) => r.notAfter)
      .sort()
      .pop();
    return {
      type: "mtls-tunnel",
      port: this.p.port,
      roots: this.ca.bundle().map((d) => d.toString("base64")),
      ...(newest ? { keyCreatedAt: new Date(Date.parse(newest) - this.ca.rootTtlMs).toISOString() } : {}),
    };
  }

  /** Starts the tunnel process; hands it the peers now and on every change of the node registry. */
  async attach(view: NodeView, _publish?: (e: NodeEncryptionV1) => Promise<void>): Promise<void> {
    this.view = view;
    this.peers = tunnelPeers(view, this.p.node);
    this.sup?.setPeers(this.peers);
    await this.sup?.start();
    const push = (): void => {
      const next = tunnelPeers(view, this.p.node);
      if (JSON.stringify(next) === JSON.stringify(this.peers)) return;
      this.peers = next;
      this.log.info({ peers: next.map((x) => x.node) }, "mTLS tunnel peers");
      this.sup?.setPeers(next);
    };
    view.onChange(push);
    push();
  }

  /**
   * Flows' IP.encrypted: TCP to a tunnel peer's pod is carried (the redirect takes every such
   * connection); on the receiving side, TCP from the pod gateway address (where the tunnel delivers
   * from) under a pod identity came through the tunnel (only its marked sockets carry one).
   */
  encrypts(ip: string, tcp?: boolean, identity?: number): boolean {
    if (
      tcp === true &&
      identity !== undefined &&
      identity >= MIN_POD_IDENTITY &&
      ip === gateway4(this.p.localCidrs)
    )
      return true;
    const h = hostPrefix(ip);
    return tcp === true && h !== undefined && this.peers.some((p) => p.podCidrs.some((c) => { const q = parsePrefix(c); return q !== undefined && containsPrefix(q, h); })); // prettier-ignore
  }

  /** The source pod of the connection the tunnel opened from local `port` to a pod here (flows). */
  originOf(destination: string, destinationPort: number, port: number): Origin | undefined {
    return this.origins.find(destination, destinationPort, port);
  }

  /**
   * The common status shape (status.ts): publicKey is the SHA-256 fingerprint of this node's active
   * CA root (what peers pin), each peer's counters under `tunnel`; the handshake is `ok` while a
   * TLS session with the peer is open or was made within the last 3 minutes.
   */
  async status(): Promise<EncryptionStatus> {
    const stats = (await this.sup?.stats()) ?? [];
    const rec = this.ca ? this.record() : undefined;
    const created = rec?.keyCreatedAt ?? new Date(0).toISOString();
    const records = this.view?.snapshot.records;
    const now = Date.now();
    const strict = this.p.strictCidrs !== undefined;
    return {
      mode: "mtls-tunnel",
      strict,
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      nodeToNode: false,
      interface: this.ifname,
      impl: this.sup?.pid !== undefined ? "hbone" : "starting",
      port: this.p.port,
      publicKey: this.rootFingerprint(),
      keyCreatedAt: created,
      keyAgeSeconds: Math.max(0, Math.round((now - Date.parse(created)) / 1000)),
      peers: this.peers.map((p): PeerStatus => {
        const s = stats.find((x) => x.node === p.node);
        const kc = records?.get(p.node)?.record.encryption?.keyCreatedAt;
        const hs = s?.lastHandshake !== undefined ? Date.parse(s.lastHandshake) : undefined;
        const open = (s?.sessions ?? 0) > 0;
        return {
          node: p.node,
          mode: "mtls-tunnel",
          strict,
          nodeToNode: false,
          ...(kc ? { keyCreatedAt: kc, keyAgeSeconds: Math.max(0, Math.round((now - Date.parse(kc)) / 1000)) } : {}), // prettier-ignore
          handshake: hs === undefined ? "never" : open || now - hs <= 180_000 ? "ok" : "stale",
          ...(s?.lastHandshake !== undefined ? { lastHandshake: s.lastHandshake } : {}),
          publicKey: fingerprint(p.roots[p.roots.length - 1]),
          endpoint: `${p.address}:${p.port}`,
          allowedIps: p.podCidrs,
          rxBytes: s?.bytesIn ?? 0,
          txBytes: s?.bytesOut ?? 0,
          tunnel: {
            sessions: s?.sessions ?? 0,
            streamsTotal: s?.streamsTotal ?? 0,
            streamsOpen: s?.streamsOpen ?? 0,
            inboundAccepted: s?.inboundAccepted ?? 0,
            inboundRefused: s?.inboundRefused ?? 0,
          },
          ...(s?.lastError ? { lastError: s.lastError } : {}),
        };
      }),
      tunnel: {
        trustDomain: this.p.tunnel.trustDomain,
        redirectPort: this.p.tunnel.redirectPort,
        ...(this.sup?.pid !== undefined ? { pid: this.sup.pid } : {}),
      },
      ...(this.sup?.lastError ? { lastError: this.sup.lastError } : {}),
    };
  }

  /** The active root's fingerprint (the newest one while none is active yet). */
  private rootFingerprint(): string {
    if (!this.ca) return "";
    const view = this.ca.rootsView();
    const der = this.ca.bundle();
    const i = view.findIndex((r) => r.state === "active");
    return fingerprint(der[i >= 0 ? i : der.length - 1]?.toString("base64"));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sup?.stop();
  }
}

/** `sha256:<hex>` of a base64 DER certificate ("" when there is none). */
function fingerprint(b64: string | undefined): string {
  return b64 ? `sha256:${createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex")}` : "";
}

/** The peers: live nodes publishing an mTLS tunnel, with their IPv4 address and the pod CIDRs they own. */
export function tunnelPeers(view: NodeView, self: string): TunnelPeer[] {
  const s = view.snapshot;
  const mine = s.owned.get(self) ?? [];
  const out: TunnelPeer[] = [];
  for (const [name, r] of s.records) {
    const e = r.record.encryption;
    const ip = r.record.addresses.ipv4;
    if (name === self || e?.type !== "mtls-tunnel" || ip === undefined) continue;
    const cidrs = (s.owned.get(name) ?? []).filter(
      (c) => !mine.some((m) => containsPrefix(m, c) || containsPrefix(c, m)),
    );
    out.push({
      node: name,
      address: ip,
      port: e.port,
      roots: [...e.roots],
      podCidrs: cidrs.map(prefixString).sort(),
    });
  }
  return out.sort((a, b) => (a.node < b.node ? -1 : 1));
}

/** The pod gateway (first host) of the first IPv4 pod CIDR: where the proxy and the tunnel listen. */
function gateway4(cidrs: readonly string[]): string {
  for (const c of cidrs) {
    const p = parsePrefix(c);
    if (p?.family === 4) return addrString(4, p.addr + 1n);
  }
  throw new Error("the mTLS tunnel needs an IPv4 pod CIDR");
}
