/**
 * The receiving side of the tunnel: peers' tunnels connect here (TLS 1.3, HTTP/2), each session
 * presenting a source identity's X.509-SVID; each CONNECT stream is carried to a pod of this node
 * over a socket whose mark is that identity, so this node's kernel policy judges the connection
 * as coming from the identity the certificate names, never from an address.
 *
 *   peer tunnel --TLS (client cert: spiffe://<td>/identity/<n>, signed by THAT peer node's root)-->
 *     session: identity n (or refused: unknown peer, another trust domain, a node or reserved ID,
 *              an identity with no endpoint on that peer node)
 *     stream CONNECT B:port (B in this node's pod CIDRs only) --broker: socket, SO_MARK n--> B
 *       (forwarded: for=A, A in that peer's pod CIDRs: the agent is told first which local port
 *        carries A's connection, so that flows name A; a claim it checks, never used by policy)
 *       kernel out_c: the tunnel group's marked packets -> B's ingress policy with identity n
 *     200 and bytes both ways | 403 (not ours) | 504 (no answer: dropped) | 502 (refused)
 *
 * The server itself presents this node's SVID, spiffe://<td>/node/<name> (see client.ts).
 */
import http2 from "node:http2";
import type net from "node:net";
import type { TLSSocket } from "node:tls";
import { containsPrefix, parseAddr, parsePrefix, type Prefix } from "../../labels/cidr.js";
import { splice, H2_SETTINGS, H2_WINDOW } from "./client.js";
import { sourceIdentity, tlsCreds } from "./creds.js";
import type { TunnelStats } from "./stats.js";
import type { MarkedSocket } from "./broker-client.js";
import type { TunnelOrigin, TunnelPeer, WireCreds } from "./wire.js";

/** Cluster identities only: reserved ones (host, remote-node, ...) and local CIDR/FQDN ones are never a pod's. */
const MIN_POD_IDENTITY = 256;
const MAX_POD_IDENTITY = 2 ** 24 - 1;

export interface ServerDeps {
  readonly trustDomain: string;
  readonly localCidrs: readonly string[];
  readonly connectTimeoutMs: number;
  readonly stats: TunnelStats;
  /** A socket with SO_MARK = `mark`, bound to its local `port`; take() it and connect it at once. */
  readonly markedSocket: (family: 4 | 6, mark: number) => Promise<MarkedSocket>;
  /** Tells the agent which connection a local port is about to carry; resolves once it knows. */
  readonly origin?: (o: TunnelOrigin) => Promise<void>;
  readonly refused: (from: string, why: string) => void;
  /** Whether the cluster says `node` hosts an endpoint of `identity`. */
  readonly hosts: (node: string, identity: number) => Promise<boolean>;
}

export class TunnelServer {
  private readonly server: http2.Http2SecureServer;
  private byAddress = new Map<string, TunnelPeer>();
  private readonly identities = new WeakMap<
    http2.ServerHttp2Session,
    Promise<{ identity: number; peer: TunnelPeer } | undefined>
  >();
  private readonly local: Prefix[];
  private creds: WireCreds;

  constructor(
    private readonly d: ServerDeps,
    creds: WireCreds,
  ) {
    this.creds = creds;
    this.local = d.localCidrs.map((c) => parsePrefix(c)).filter((c): c is Prefix => c !== undefined);
    this.server = http2.createSecureServer({
      ...this.context([]),
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: false,
      settings: H2_SETTINGS,
    });
    this.server.on("secureConnection", (sock: TLSSocket) => sock.setNoDelay(true));
    this.server.on("session", (s) => this.onSession(s));
    this.server.on("stream", (stream, headers) => void this.onStream(stream, headers));
    this.server.on("tlsClientError", (e, sock) => {
      const from = sock.remoteAddress ?? "?";
      this.d.refused(from, `TLS: ${e.message}`);
      const p = this.byAddress.get(from);
      if (p) this.d.stats.of(p.node, `${p.address}:${p.port}`).inboundRefused++;
    });
  }

  private context(peers: readonly TunnelPeer[]): {
    cert: string;
    key: string;
    ca: string[];
    minVersion: "TLSv1.3";
    maxVersion: "TLSv1.3";
  } {
    // The union of the peers' roots (none yet: an empty list trusts nothing, not the system's CAs);
    // onSession then checks each client against the roots of the node it connects from.
    return {
      ...tlsCreds(
        this.creds,
        peers.flatMap((p) => p.roots),
      ),
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
    };
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ host, port }, () => resolve());
    });
  }

  setPeers(peers: readonly TunnelPeer[]): void {
    this.byAddress = new Map(peers.map((p) => [p.address, p]));
    this.server.setSecureContext(this.context(peers));
  }

  setCreds(c: WireCreds, peers: readonly TunnelPeer[]): void {
    this.creds = c;
    this.server.setSecureContext(this.context(peers));
  }

  private onSession(s: http2.ServerHttp2Session): void {
    const sock = s.socket as TLSSocket;
    const from = sock.remoteAddress ?? "?";
    const peer = this.byAddress.get(from);
    const refuse = (why: string): void => {
      this.d.refused(from, why);
      if (peer) this.d.stats.of(peer.node, `${peer.address}:${peer.port}`).inboundRefused++;
      s.destroy();
    };
    if (!peer) return refuse("not the address of a tunnel peer");
    let identity: number;
    try {
      identity = sourceIdentity(sock, peer.roots, this.d.trustDomain);
    } catch (e) {
      return refuse(`client certificate refused: ${(e as Error).message}`);
    }
    if (identity < MIN_POD_IDENTITY || identity > MAX_POD_IDENTITY)
      return refuse(`identity ${identity} is not a workload's (reserved or local)`);
    // A node speaks only for identities it hosts (as WireGuard's allowed IPs: only its own pods),
    // so a node whose CA is compromised cannot present the identities of other nodes' pods.
    const who = this.d.hosts(peer.node, identity).then((ok) => {
      if (ok) return { identity, peer };
      refuse(`identity ${identity} has no endpoint on ${peer.node}`);
      return undefined;
    });
    this.identities.set(s, who);
    this.d.stats.handshake(peer.node, `${peer.address}:${peer.port}`);
    s.setLocalWindowSize(4 * H2_WINDOW);
    s.on("error", () => undefined);
  }

  private async onStream(stream: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => undefined);
    const who = await this.identities.get(stream.session as http2.ServerHttp2Session);
    const answer = (status: number): void => {
      if (!stream.headersSent && !stream.destroyed)
        stream.respond({ ":status": status }, { endStream: true });
    };
    if (!who) return answer(403);
    const st = this.d.stats.of(who.peer.node, `${who.peer.address}:${who.peer.port}`);
    const dst = h[":method"] === "CONNECT" ? this.destination(h[":authority"]) : undefined;
    if (!dst) {
      st.inboundRefused++;
      this.d.refused(
        who.peer.node,
        `not a CONNECT to a pod of this node: ${String(h[":authority"]).slice(0, 80)}`,
      );
      return answer(403);
    }
    let sock: net.Socket;
    try {
      const m = await this.d.markedSocket(dst.family, who.identity);
      const source = forwardedFor(h["forwarded"], who.peer.podCidrs);
      if (source !== undefined && this.d.origin)
        await this.d.origin({ port: m.port, destination: dst.address, destinationPort: dst.port, source, identity: who.identity }); // prettier-ignore
      sock = await m.take();
    } catch (e) {
      this.d.refused(who.peer.node, (e as Error).message);
      return answer(502);
    }
    sock.on("error", () => undefined);
    // Fail closed: connect() on a destroyed net.Socket would open a new socket without the mark
    // (judged as the host). Never connect one; this turn of the event loop it cannot be destroyed.
    if (sock.destroyed) {
      this.d.refused(who.peer.node, "the marked socket was closed before it connected");
      return answer(502);
    }
    sock.setNoDelay(true);
    const status = await new Promise<number>((resolve) => {
      const t = setTimeout(() => resolve(504), this.d.connectTimeoutMs);
      sock.once("connect", () => (clearTimeout(t), resolve(200)));
      sock.once("error", () => (clearTimeout(t), resolve(502)));
      sock.connect({ host: dst.address, port: dst.port });
    });
    if (status !== 200 || stream.destroyed) {
      sock.destroy();
      st.inboundRefused++;
      return answer(status);
    }
    st.inboundAccepted++;
    stream.respond({ ":status": 200 });
    splice(
      sock,
      stream,
      (n) => (st.bytesIn += n),
      (n) => (st.bytesOut += n),
    );
  }

  /** host:port of a CONNECT, only when host is an address in this node's pod CIDRs. */
  private destination(auth: unknown): { address: string; port: number; family: 4 | 6 } | undefined {
    if (typeof auth !== "string" || auth.length > 64) return undefined;
    const m = /^\[?([0-9a-fA-F.:]+)\]?:(\d{1,5})$/.exec(auth);
    const a = m?.[1] !== undefined ? parseAddr(m[1]) : undefined;
    const port = Number(m?.[2]);
    if (!a || !m?.[1] || port < 1 || port > 65535) return undefined;
    const host: Prefix = { family: a.family, addr: a.value, bits: a.family === 4 ? 32 : 128 };
    if (!this.local.some((c) => containsPrefix(c, host))) return undefined;
    return { address: m[1], port, family: a.family };
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/**
 * The source pod a peer names in its CONNECT (`forwarded: for=A`, RFC 7239's form, one element):
 * A only when it is a plain address inside the pod CIDRs of the peer the session came from;
 * anything else (absent, a list, an obfuscated or foreign name) is no claim at all.
 */
export function forwardedFor(v: unknown, peerCidrs: readonly string[]): string | undefined {
  if (typeof v !== "string" || v.length > 80) return undefined;
  const m = /^for=(?:"\[([0-9a-fA-F:.]+)\]"|([0-9.]+))$/i.exec(v.trim());
  const ip = m?.[1] ?? m?.[2];
  const a = ip !== undefined ? parseAddr(ip) : undefined;
  if (!a || ip === undefined) return undefined;
  const host: Prefix = { family: a.family, addr: a.value, bits: a.family === 4 ? 32 : 128 };
  const inPeer = peerCidrs.some((c) => {
    const p = parsePrefix(c);
    return p !== undefined && containsPrefix(p, host);
  });
  return inPeer ? ip : undefined;
}
