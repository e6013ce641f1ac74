/**
 * The node's mTLS tunnel process (`--encryption mtls-tunnel`), started by the agent
 * (supervisor.ts) in the node's network namespace as the tunnel group. It forks its privileged
 * broker, binds its two listeners, then drops root for the tunnel user: the process that parses
 * TLS and HTTP/2 from the network holds no capability.
 *
 *   pods --kernel DNAT--> redirect listener (gateway:15006) --client.ts--> peers (HBONE, TLS 1.3)
 *   peers --> tunnel listener (node address:15008) --server.ts--> local pods (SO_MARK = identity)
 *   agent <--IPC (wire.ts)--> SVIDs, peers, source identities, status, carried connections' origins
 */
import net from "node:net";
import { BrokerClient } from "./broker-client.js";
import { TunnelClient } from "./client.js";
import { TunnelServer } from "./server.js";
import { TunnelStats } from "./stats.js";
import type { FromTunnel, ToTunnel, TunnelConfig, TunnelOrigin, TunnelPeer, WireCreds } from "./wire.js";

function send(m: FromTunnel): void {
  if (process.send && process.connected) process.send(m);
}

function fatal(message: string): never {
  send({ type: "fatal", message });
  process.exit(1);
}

const plain = (a: string): string => (a.startsWith("::ffff:") ? a.slice(7) : a);

async function main(): Promise<void> {
  const raw = process.argv[2];
  if (!raw) fatal("usage: main.js <config JSON>");
  const cfg = JSON.parse(raw) as TunnelConfig;
  const stats = new TunnelStats();
  let peers: readonly TunnelPeer[] = [];
  const sources = new Map<number, (m: Extract<ToTunnel, { type: "source" }>) => void>();
  let nextId = 1;
  const hostsAnswers = new Map<number, (ok: boolean) => void>();
  /** Asks the agent whether `node` hosts `identity` (false when it does not answer in 5 s). */
  const hosts = (node: string, identity: number): Promise<boolean> =>
    new Promise((resolve) => {
      const id = nextId++;
      const t = setTimeout(() => (hostsAnswers.delete(id), resolve(false)), 5000);
      hostsAnswers.set(id, (ok) => (clearTimeout(t), resolve(ok)));
      send({ type: "hosts?", id, node, identity });
    });
  const originAnswers = new Map<number, () => void>();
  /** Tells the agent which connection a local port will carry; waits for it (at most 1 s). */
  const origin = (o: TunnelOrigin): Promise<void> =>
    new Promise((resolve) => {
      const id = nextId++;
      const t = setTimeout(() => (originAnswers.delete(id), resolve()), 1000);
      originAnswers.set(id, () => (clearTimeout(t), resolve()));
      send({ type: "origin?", id, ...o });
    });
  const box: { server?: TunnelServer } = {}; // set once the broker and the node's SVID are there
  let nodeCreds: WireCreds | undefined;
  const inited = new Promise<WireCreds>((resolve) => {
    process.on("message", (m: ToTunnel) => {
      if (m.type === "init") {
        nodeCreds = m.node;
        resolve(m.node);
      } else if (m.type === "node-svid") {
        nodeCreds = m.node;
        box.server?.setCreds(m.node, peers);
      } else if (m.type === "peers") {
        peers = m.peers;
        client.setPeers(peers);
        box.server?.setPeers(peers);
      } else if (m.type === "source") {
        sources.get(m.id)?.(m);
        sources.delete(m.id);
      } else if (m.type === "origin") {
        originAnswers.get(m.id)?.();
        originAnswers.delete(m.id);
      } else if (m.type === "hosts") {
        hostsAnswers.get(m.id)?.(m.ok);
        hostsAnswers.delete(m.id);
      } else if (m.type === "status") {
        send({ type: "status", id: m.id, peers: stats.view(new Set(peers.map((p) => p.node))) });
      }
    });
  });
  process.on("disconnect", () => process.exit(0));

  // Each answer carries the identity's current SVID (the agent signs and renews it at half life).
  const source = (ip: string): Promise<{ identity: number; creds: WireCreds }> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const t = setTimeout(() => (sources.delete(id), reject(new Error("the agent did not answer"))), 5000);
      sources.set(id, (m) => {
        clearTimeout(t);
        if (m.identity === undefined || !m.creds)
          return reject(new Error(m.error ?? `no identity for ${ip}`));
        resolve({ identity: m.identity, creds: m.creds });
      });
      send({ type: "source?", id, ip });
    });
  const client = new TunnelClient({ trustDomain: cfg.trustDomain, stats, source });

  const broker = await BrokerClient.start(() => fatal("the tunnel's broker exited"));
  const creds = await inited;
  const server = new TunnelServer(
    {
      trustDomain: cfg.trustDomain,
      localCidrs: cfg.localCidrs,
      connectTimeoutMs: cfg.connectTimeoutMs,
      stats,
      markedSocket: (f, mark) => broker.markedSocket(f, mark),
      refused: (from, why) => send({ type: "refused", from, why }),
      hosts,
      origin,
    },
    nodeCreds ?? creds,
  );
  box.server = server;
  server.setPeers(peers);
  await server.listen(cfg.listen.host, cfg.listen.port);

  // noDelay: a pod's small writes cross at once (request/response; ztunnel sets TCP_NODELAY too).
  const redirect = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
    sock.on("error", () => undefined);
    const local = { address: plain(sock.localAddress ?? ""), port: sock.localPort ?? 0 };
    const remote = { address: plain(sock.remoteAddress ?? ""), port: sock.remotePort ?? 0 };
    void broker
      .originalDst(local, remote)
      .then((dst) => {
        if (!dst) throw new Error(`no original destination for ${remote.address}:${remote.port}`);
        return client.carry(sock, remote.address, dst);
      })
      .catch((e: unknown) => {
        send({ type: "refused", from: remote.address, why: `outbound: ${(e as Error).message}` });
        sock.resetAndDestroy();
      });
  });
  await new Promise<void>((resolve, reject) => {
    redirect.once("error", reject);
    redirect.listen({ host: cfg.redirect.host, port: cfg.redirect.port }, () => resolve());
  });
  dropPrivileges(cfg);
  send({ type: "ready" });
}

/** Least privilege: sockets bound, broker forked: root is given up (no capabilities, one group). */
function dropPrivileges(cfg: TunnelConfig): void {
  if (cfg.uid === undefined || process.getuid?.() !== 0) return;
  const gid = process.getgid?.() ?? 0;
  process.setgroups?.([gid]);
  process.setuid?.(cfg.uid);
  if (process.getuid?.() !== cfg.uid) fatal(`could not drop root to uid ${cfg.uid}`);
}

main().catch((e: unknown) => fatal(e instanceof Error ? e.message : String(e)));
