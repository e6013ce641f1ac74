/**
 * Mutual authentication across the nodes of a cluster: attaches the node registry to the auth
 * manager once the cluster runs (agent/run.ts).
 *
 *   node record auth {port, trustDomain, roots} --publish--> etcd --NodeView--> every node:
 *     roots of the other nodes (same trust domain) -> provider.setPeerRoots (the bundle)
 *     pod CIDRs owned -> which node a pair's end lives on (AuthNodes)
 *     underlay addresses -> the handshake port's guard (datapath/auth-table.ts) and who a client is
 *   openPeerNet(port, node netns) -> Responder (answers) + connect (asks)
 *   PeerChannels: one pooled TLS connection to each peer node's agent, opened when the node
 *     appears (node certificates, node-cert.ts); closed and opened again when the bundle changes
 *
 * A root certificate is public: nothing secret is published. Each node issues the SVIDs of its
 * own endpoints' identities with its own root; what a peer's certificate proves is that a node
 * whose record the cluster store holds (its etcd credentials) signed it.
 */
import type { Logger } from "pino";
import { X509Certificate } from "node:crypto";
import { containsAddr, prefixString, type Prefix } from "../labels/cidr.js";
import type { NodeAuthV1, NodeRecordV1 } from "../cluster/keys.js";
import type { SvidProvider } from "../spiffe/provider.js";
import type { NodeSnapshot, NodeView } from "../cluster/node-view.js";
import type { AuthManager } from "./manager.js";
import type { AuthNodes } from "./pairs.js";
import { openPeerNet } from "./peer-net.js";
import { Responder } from "./responder.js";
import { NodeCredential } from "./node-cert.js";
import { PeerChannels } from "./channel.js";

/** Cilium's mutual-authentication port. */
export const DEFAULT_AUTH_PORT = 4250;

export interface AuthClusterParams {
  readonly manager: AuthManager;
  readonly view: NodeView;
  readonly self: string;
  readonly port: number;
  readonly netns?: string;
  readonly logger: Logger;
  /** Publishes this node's record with `auth` (the registry keeps the rest of it). */
  readonly publish: (auth: NonNullable<NodeRecordV1["auth"]>) => Promise<void>;
}

export class AuthCluster {
  readonly responder: Responder;
  private guardKey = "";
  private published = "";

  readonly channels: PeerChannels;

  private constructor(private readonly p: AuthClusterParams) {
    const m = p.manager;
    const credential = new NodeCredential(m.p.provider, p.self);
    this.channels = new PeerChannels({ nodes: () => m.nodes, net: () => m.net, credential, trustDomain: m.p.provider.trustDomain, cache: m.verified, keys: m.keys, logger: p.logger }); // prettier-ignore
    this.responder = new Responder(m, credential, this.channels.served);
    m.channels = this.channels;
  }

  static async attach(p: AuthClusterParams): Promise<AuthCluster> {
    const c = new AuthCluster(p);
    const net = await openPeerNet(p.port, p.netns);
    p.manager.net = net;
    net.server.on("connection", (s) => c.responder.onConnection(s));
    c.onSnapshot(p.view.snapshot);
    p.view.onChange((s) => c.onSnapshot(s));
    await c.publishRoots();
    p.manager.p.provider.subscribe((e) => {
      if (e.kind !== "bundle") return;
      void c.publishRoots();
      // Pooled connections were opened under the old bundle: open them again under the new one.
      c.channels.closeAll();
      c.channels.warm(c.peers());
    });
    await c.updateGuard(p.view.snapshot);
    c.channels.startWarming(() => c.peers());
    return c;
  }

  private async publishRoots(): Promise<void> {
    const auth = authRecordOf(this.p.manager.p.provider, this.p.port);
    const k = JSON.stringify(auth);
    if (k === this.published) return;
    this.published = k;
    await this.p.publish(auth).catch((e: unknown) => {
      this.published = "";
      this.p.logger.error(
        { err: (e as Error).message },
        "cannot publish this node's handshake port and roots",
      );
    });
  }

  private onSnapshot(s: NodeSnapshot): void {
    const m = this.p.manager;
    m.nodes = clusterNodes(this.p.self, s, m.p.provider.trustDomain);
    // Roots that are not CA certificates are left out (recordRoots): never trusted.
    const roots = [...s.records.keys()].flatMap((name) => m.nodes.rootsOf(name));
    // Parsed now, once: a pair's validation then parses only the chain its peer presents.
    m.verified.prepare(roots);
    m.p.provider.setPeerRoots(roots);
    void this.updateGuard(s);
    this.channels.warm(this.peers());
  }

  /** Peer nodes that publish a handshake port: their pooled connections are opened ahead. */
  private peers(): string[] {
    const m = this.p.manager;
    if (m.transport !== "channel" || !m.net) return [];
    return [...this.p.view.snapshot.records.keys()].filter((n) => n !== this.p.self && m.nodes.peerAddress(n)); // prettier-ignore
  }

  private async updateGuard(s: NodeSnapshot): Promise<void> {
    const peers = [...s.records.values()]
      .filter((r) => r.record.name !== this.p.self)
      .flatMap((r) => [r.record.addresses.ipv4, r.record.addresses.ipv6])
      .filter((a): a is string => a !== undefined)
      .sort();
    const k = peers.join(",");
    if (k === this.guardKey) return;
    this.guardKey = k;
    await this.p.manager.p.table.guard(this.p.port, peers).catch((e: unknown) => {
      this.guardKey = "";
      this.p.logger.error({ err: (e as Error).message }, "cannot guard the handshake port");
    });
  }
}

/** The `auth` of this node's record: handshake port, trust domain, root certificates. */
export function authRecordOf(pr: SvidProvider, port: number): NodeAuthV1 {
  return { port, trustDomain: pr.trustDomain, roots: pr.ownRoots().map((r) => r.toString("base64")) };
}

/** The CA roots of a node record of trust domain `td` (public certificates; anything else is left out). */
function recordRoots(r: NodeRecordV1 | undefined, td: string): Buffer[] {
  const a = r?.auth;
  if (!a || a.trustDomain !== td) return [];
  const out: Buffer[] = [];
  for (const b of a.roots) {
    const der = Buffer.from(b, "base64");
    try {
      if (new X509Certificate(der).ca) out.push(der);
    } catch {
      // not a certificate: never trusted
    }
  }
  return out;
}

/** Where the ends of pairs live, from the registry view. */
export function clusterNodes(self: string, s: NodeSnapshot, td = ""): AuthNodes {
  const roots = new Map([...s.records].map(([n, r]) => [n, recordRoots(r.record, td)]));
  const table: (readonly [string, Prefix])[] = [...s.owned].flatMap(([n, ps]) =>
    ps.map((p) => [n, p] as const),
  );
  return {
    self,
    nodeOf: (ip) => table.find(([, p]) => containsAddr(p, ip))?.[0],
    netsOf: (node) => (s.owned.get(node) ?? []).map(prefixString),
    peerAddress: (node) => {
      const r = s.records.get(node)?.record;
      const host = r?.addresses.ipv4 ?? r?.addresses.ipv6;
      return r?.auth && host !== undefined ? { host, port: r.auth.port } : undefined;
    },
    nodeAt: (ip) =>
      [...s.records.values()].find((r) => r.record.addresses.ipv4 === ip || r.record.addresses.ipv6 === ip)
        ?.record.name,
    rootsOf: (node) => (node === self ? [] : (roots.get(node) ?? [])),
  };
}
