/**
 * The sending side of the tunnel: a pod's TCP connection the kernel redirected here is carried
 * to the tunnel of the node that owns its destination, as one HTTP/2 CONNECT stream (Istio's
 * HBONE) in a TLS 1.3 session that presents the SOURCE identity's X.509-SVID.
 *
 *   pod A --(DNAT, kernel)--> redirect listener --conntrack--> original dst B
 *     --agent: identity of A's address + its SVID--> session[peer node, identity]
 *     --CONNECT B:port--> peer tunnel (checks our SVID) --> B, judged by its node's kernel
 *
 * One session per (peer node, source identity): a session's client certificate is one identity,
 * and its streams share it. The peer must present spiffe://<td>/node/<its name>, signed by that
 * node's own root. Any failure resets the pod's connection (fail closed: nothing goes around).
 */
import http2 from "node:http2";
import type net from "node:net";
import tls from "node:tls";
import { containsPrefix, parseAddr, parsePrefix, type Prefix } from "../../labels/cidr.js";
import { nodeSpiffeId, peerSpiffeId, tlsCreds } from "./creds.js";
import type { TunnelStats } from "./stats.js";
import type { TunnelPeer, WireCreds } from "./wire.js";

/** Flow control: HTTP/2's default 64 KiB window would cap a stream at a window per round trip. */
export const H2_WINDOW = 8 * 1024 * 1024;
export const H2_SETTINGS: http2.Settings = { initialWindowSize: H2_WINDOW, maxFrameSize: 1 << 20 };

interface Session {
  readonly s: http2.ClientHttp2Session;
  readonly renewAt: number;
}

export interface ClientDeps {
  readonly trustDomain: string;
  readonly stats: TunnelStats;
  /** The source identity and its SVID for a local pod address (asks the agent). */
  readonly source: (ip: string) => Promise<{ identity: number; creds: WireCreds }>;
}

export class TunnelClient {
  private peers: { peer: TunnelPeer; cidrs: Prefix[] }[] = [];
  private readonly sessions = new Map<string, Promise<Session>>();

  constructor(private readonly d: ClientDeps) {}

  setPeers(peers: readonly TunnelPeer[]): void {
    this.peers = peers.map((peer) => ({
      peer,
      cidrs: peer.podCidrs.map((c) => parsePrefix(c)).filter((c): c is Prefix => c !== undefined),
    }));
    // Sessions to peers that changed (address, roots) or left are closed; their streams finish.
    for (const [key, p] of this.sessions) {
      const node = key.split("|")[0] ?? "";
      const now = peers.find((x) => x.node === node);
      void p.then(
        (s) => {
          if (!now || (s.s as { peerKey?: string }).peerKey !== peerKey(now)) {
            s.s.close();
            this.sessions.delete(key);
          }
        },
        () => undefined,
      );
    }
  }

  peerOf(ip: string): TunnelPeer | undefined {
    const a = parseAddr(ip);
    if (!a) return undefined;
    const host: Prefix = { family: a.family, addr: a.value, bits: a.family === 4 ? 32 : 128 };
    return this.peers.find((p) => p.cidrs.some((c) => containsPrefix(c, host)))?.peer;
  }

  /** Carries `sock` (a pod's connection, from `src`) to `dst` through the owner node's tunnel. */
  async carry(sock: net.Socket, src: string, dst: { address: string; port: number }): Promise<void> {
    const peer = this.peerOf(dst.address);
    if (!peer) throw new Error(`no tunnel peer owns ${dst.address}`);
    const { identity, creds } = await this.d.source(src);
    const session = await this.session(peer, identity, creds);
    const st = this.d.stats.of(peer.node, `${peer.address}:${peer.port}`);
    const authority = dst.address.includes(":")
      ? `[${dst.address}]:${dst.port}`
      : `${dst.address}:${dst.port}`;
    // The source pod's address, as HBONE's `Forwarded: for=` (RFC 7239): the receiving node names
    // it in flows once it checked it against the identity the certificate proved (never policy).
    const forwarded = `for=${src.includes(":") ? `"[${src}]"` : src}`;
    const stream = session.request(
      { ":method": "CONNECT", ":authority": authority, forwarded },
      { endStream: false },
    );
    st.streamsTotal++;
    st.streamsOpen++;
    stream.once("close", () => st.streamsOpen--);
    await new Promise<void>((resolve, reject) => {
      stream.once("response", (h) => {
        const status = Number(h[":status"]);
        if (status === 200) resolve();
        else reject(new Error(`${peer.node} answered ${status} for ${authority}`));
      });
      stream.once("error", reject);
      stream.once("close", () => reject(new Error(`${peer.node} closed the stream for ${authority}`)));
    });
    splice(
      sock,
      stream,
      (n) => (st.bytesOut += n),
      (n) => (st.bytesIn += n),
    );
  }

  private async session(
    peer: TunnelPeer,
    identity: number,
    creds: WireCreds,
  ): Promise<http2.ClientHttp2Session> {
    const key = `${peer.node}|${identity}`;
    const have = this.sessions.get(key);
    if (have) {
      const s = await have.catch(() => undefined);
      if (s && !s.s.closed && !s.s.destroyed && Date.now() < s.renewAt) return s.s;
      if (this.sessions.get(key) === have) this.sessions.delete(key);
      s?.s.close(); // renewed SVID: new streams go to a new session, open ones finish here
    }
    let p = this.sessions.get(key);
    if (!p) {
      p = this.open(peer, creds);
      this.sessions.set(key, p);
      p.then(
        (s) => s.s.once("close", () => this.sessions.get(key) === p && this.sessions.delete(key)),
        () => this.sessions.get(key) === p && this.sessions.delete(key),
      );
    }
    return (await p).s;
  }

  private async open(peer: TunnelPeer, creds: WireCreds): Promise<Session> {
    const endpoint = `${peer.address}:${peer.port}`;
    const st = this.d.stats.of(peer.node, endpoint);
    const c = tlsCreds(creds, peer.roots);
    const sock = tls.connect({
      host: peer.address,
      port: peer.port,
      ...c,
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
      ALPNProtocols: ["h2"],
      rejectUnauthorized: true,
      checkServerIdentity: () => undefined, // an SVID names a SPIFFE ID, checked below
    });
    sock.setNoDelay(true); // HTTP/2 frames go out at once: many streams' small writes share this socket
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("TLS handshake timed out")), 10_000);
        sock.once("secureConnect", () => (clearTimeout(t), resolve()));
        sock.once("error", (e) => (clearTimeout(t), reject(e)));
      });
      const id = peerSpiffeId(sock, peer.roots, this.d.trustDomain);
      const want = nodeSpiffeId(this.d.trustDomain, peer.node);
      if (id.uri !== want) throw new Error(`the peer presented ${id.uri}, not ${want}`);
    } catch (e) {
      sock.destroy();
      const why = `TLS to ${peer.node} (${endpoint}) failed: ${(e as Error).message}`;
      this.d.stats.error(peer.node, endpoint, why);
      throw new Error(why);
    }
    this.d.stats.handshake(peer.node, endpoint);
    const s = http2.connect(`https://${endpoint}`, { createConnection: () => sock, settings: H2_SETTINGS });
    s.setLocalWindowSize(4 * H2_WINDOW);
    s.on("error", (e) => this.d.stats.error(peer.node, endpoint, e.message));
    (s as { peerKey?: string }).peerKey = peerKey(peer);
    st.sessions++;
    s.once("close", () => st.sessions--);
    return { s, renewAt: creds.renewAt };
  }

  close(): void {
    for (const p of this.sessions.values())
      void p.then(
        (s) => s.s.close(),
        () => undefined,
      );
    this.sessions.clear();
  }
}

const peerKey = (p: TunnelPeer): string => JSON.stringify([p.address, p.port, p.roots]);

/**
 * Copies both ways with back-pressure and half-close; an error on either side resets the other
 * (a TCP RST to the pod, RST_STREAM to the peer): a broken tunnel is never a clean end of data.
 */
export function splice(
  sock: net.Socket,
  stream: http2.Http2Stream,
  out: (n: number) => void,
  inn: (n: number) => void,
): void {
  sock.on("data", (b: Buffer) => out(b.length));
  stream.on("data", (b: Buffer) => inn(b.length));
  sock.pipe(stream);
  stream.pipe(sock);
  sock.once("error", () => stream.close(http2.constants.NGHTTP2_CANCEL));
  stream.once("error", () => sock.resetAndDestroy());
  stream.once("aborted", () => sock.resetAndDestroy());
  sock.once("close", () => {
    if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
  });
}
