/**
 * Mutual authentication across the nodes of a cluster: attaches the node registry to the auth
 * manager once the cluster runs (agent/run.ts).
 *
 *   node record auth {port, trustDomain, roots} --publish--> etcd --NodeView--> every node:
 *     roots of the other nodes (same trust domain) -> provider.setPeerRoots (the bundle)
 *     pod CIDRs owned -> which node a pair's end lives on (AuthNodes)
 *     underlay addresses -> the handshake port's guard (datapath/auth-table.ts) and who a client is
 *   openPeerNet(port, node netns) -> Responder (answers) + connect (asks)
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

  private constructor(private readonly p: AuthClusterParams) {
    this.responder = new Responder(p.manager);
  }

  static async attach(p: AuthClusterParams): Promise<AuthCluster> {
    const c = new AuthCluster(p);
    const net = await openPeerNet(p.port, p.netns);
    p.manager.net = net;
    net.server.on("connection", (s) => c.responder.onConnection(s));
    c.onSnapshot(p.view.snapshot);
    p.view.onChange((s) => c.onSnapshot(s));
    await c.publishRoots();
    p.manager.p.provider.subscribe((e) => void (e.kind === "bundle" && c.publishRoots()));
    await c.updateGuard(p.view.snapshot);
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
    m.nodes = clusterNodes(this.p.self, s);
    const td = m.p.provider.trustDomain;
    const roots: Buffer[] = [];
    for (const [name, r] of s.records) {
      const a = r.record.auth;
      if (name === this.p.self || !a || a.trustDomain !== td) continue;
      for (const b of a.roots) {
        const der = Buffer.from(b, "base64");
        try {
          if (new X509Certificate(der).ca) roots.push(der);
        } catch {
          this.p.logger.warn({ node: name }, "ignored a root in a node record: not a certificate");
        }
      }
    }
    m.p.provider.setPeerRoots(roots);
    void this.updateGuard(s);
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

/** Where the ends of pairs live, from the registry view. */
export function clusterNodes(self: string, s: NodeSnapshot): AuthNodes {
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
  };
}
