/**
 * The responder of cross-node handshakes: what this node's agent answers on its handshake port.
 *
 *   connection --from a registered node's address? (the kernel guard drops the others first;
 *               checked again here) --at most MAX_CONCURRENT at once, each bounded in time-->
 *   SNI -> the pair and the end this node must present: that identity has an endpoint here,
 *          is not revoked or reserved -> its SVID's context
 *   client chain -> validated, names the other end's identity -> entry in this node's kernel if
 *          its own policy requires authentication of the pair -> ACCEPTED
 *   SNI node.auth.membrane: a pooled connection (channel.ts); this node's certificate, then
 *          channel-server.ts answers pair requests on it for as long as it lives
 *
 * Every refusal closes the connection and is counted; none carries a key or certificate.
 */
import type { Socket } from "node:net";
import type * as tls from "node:tls";
import { MembraneError } from "../errors.js";
import { identitySpiffeId } from "../spiffe/id.js";
import { authRequired } from "./judge.js";
import type { AuthManager } from "./manager.js";
import { checkPeer, peerChain as peerChainOf } from "./handshake.js";
import { serverHandshake, type PairRole } from "./peer-handshake.js";
import type { Pair } from "./pairs.js";
import { CHANNEL_SNI } from "./channel.js";
import { serveChannel, type ChannelServerStats } from "./channel-server.js";
import type { NodeCredential } from "./node-cert.js";

/** Handshakes answered at once; more connections are closed at once (a flood costs an accept). */
export const MAX_CONCURRENT = 32;
const HANDSHAKE_BOUND_MS = 5000;
/** Pooled connections one peer node may hold open here at once. */
const MAX_CHANNELS_PER_NODE = 4;

export class Responder {
  private active = 0;
  readonly stats = { accepted: 0, refused: 0, strangers: 0, busy: 0 };
  private readonly channelsOf = new Map<string, number>();

  constructor(
    private readonly m: AuthManager,
    private readonly credential?: NodeCredential,
    /** Pooled connections served (channel-server.ts). */
    readonly pooled: ChannelServerStats = { channels: 0, requests: 0, unsigned: 0, accepted: 0, refused: 0 },
  ) {}

  onConnection(sock: Socket): void {
    const from = (sock.remoteAddress ?? "").replace(/^::ffff:/, "");
    const client = this.m.nodes.nodeAt(from);
    if (client === undefined || client === this.m.nodes.self) {
      this.stats.strangers++;
      sock.destroy();
      return;
    }
    if (this.active >= MAX_CONCURRENT) {
      this.stats.busy++;
      sock.destroy();
      return;
    }
    this.active++;
    sock.setNoDelay(true);
    let counted = true;
    const release = (): void => {
      if (!counted) return;
      counted = false;
      this.active--;
    };
    sock.once("close", release);
    sock.on("error", () => undefined);
    const cred = this.credential;
    serverHandshake({
      ...(cred
        ? {
            channel: {
              sni: CHANNEL_SNI,
              context: async () => (await cred.context()).ctx,
              onSecure: (s) => {
                // A pooled connection lives long: it leaves the count of handshakes under way,
                // and each node may hold a few at once.
                release();
                const n = this.channelsOf.get(client) ?? 0;
                if (n >= MAX_CHANNELS_PER_NODE) return void s.destroy();
                this.channelsOf.set(client, n + 1);
                s.once("close", () => this.channelsOf.set(client, (this.channelsOf.get(client) ?? 1) - 1));
                serveChannel(this.m, s, client, from, this.pooled);
              },
            },
          }
        : {}),
      socket: sock,
      timeoutMs: HANDSHAKE_BOUND_MS,
      contextFor: (role) => this.contextFor(role),
      accept: (role, peer) => this.accept(role, peer, client),
      onRefused: (why) => {
        this.stats.refused++;
        this.m.p.logger.warn({ node: client, why }, "refused a handshake from a peer node");
      },
    });
  }

  private async contextFor(role: PairRole): Promise<tls.SecureContext> {
    const mine = role.serverSide === "s" ? role.src : role.dst;
    this.m.checkIdentity(mine, true);
    this.m.checkIdentity(role.serverSide === "s" ? role.dst : role.src, false);
    const p = this.m.p.provider;
    const svid = await p.ensure(mine);
    return this.m.contexts.get(svid.serial, { chain: svid.chain, key: () => svid.privateKeyPkcs8() }, p.bundle(), p.bundleRevision); // prettier-ignore
  }

  private async accept(role: PairRole, peer: tls.TLSSocket, client: string): Promise<void> {
    const p = this.m.p.provider;
    const theirs = role.serverSide === "s" ? role.dst : role.src;
    const mine = role.serverSide === "s" ? role.src : role.dst;
    const notAfter = checkPeer(peer, identitySpiffeId(p.trustDomain, theirs), p.bundle(), p.trustDomain, Date.now(), "client node", this.m.verified); // prettier-ignore
    const self = this.m.nodes.self;
    const [srcNode, dstNode] = role.serverSide === "s" ? [self, client] : [client, self];
    const svid = p.current(mine);
    if (!svid) throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate identity ${mine}: its SVID is gone`); // prettier-ignore
    const state = this.m.p.state();
    this.stats.accepted++;
    // This node's kernel gets the entry only if its own policy requires it (an ingress rule of the
    // destination, an egress rule of the source): nothing else would use it, and the revocation of a
    // pair this node never needed would cut a connection another node's policy admitted.
    if (!state || !authRequired(state, role.src, role.dst)) return;
    const n = this.m.nodes;
    const pair: Pair = { src: role.src, dst: role.dst, srcNode, dstNode, srcNets: n.netsOf(srcNode), dstNets: n.netsOf(dstNode), expiresMs: 0, chains: [], serials: new Map([[mine, svid.serial]]), srcIps: new Set(), dstIps: new Set() }; // prettier-ignore
    await this.m.record(pair, notAfter < svid.notAfter ? notAfter : svid.notAfter, [peerChainOf(peer)]);
  }
}
