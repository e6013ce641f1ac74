/**
 * The node's proxy process: started by the agent (ProxySupervisor) inside
 * the node's network namespace, as the proxy group (the kernel lets that
 * group's upstream connections out without a second check). Once its
 * sockets are bound it drops root for the proxy user; conntrack lookups
 * (which need CAP_NET_ADMIN) go to a small broker forked before that.
 *
 *   kernel DNAT (ct mark) --> TCP l7Port ----conntrack: original dst--> PolicyTable.identify
 *                                 --> dispatch by parser: HTTP/1.1 | HTTP/2 | Kafka | TLS SNI | TLS intercept
 *                               original dst an lb-l7 service's frontend (CT_SERVICE) --> lb/balance.ts
 *                         --> UDP+TCP dnsPort --> DnsProxy (upstream = the query's original dst)
 *   agent --IPC snapshot--> PolicyTable (swapped whole; every request looks it up anew)
 *   agent --IPC hosts (full once, then deltas)--> HostMap (shared by every PolicyTable)
 *   L7 events and DNS answers --IPC--> agent
 *
 * Fail closed everywhere: no conntrack entry, no policy for the connection,
 * no agent answer for a DNS reply => reset / SERVFAIL.
 */
import net from "node:net";
import { fileURLToPath } from "node:url";
import { CT_FROM_HOST, CT_SERVICE } from "../../abi/marks.js";
import { ID } from "../../identity/reserved.js";
import { DnsProxy } from "../dns/proxy.js";
import { H2Sessions } from "../http2/sessions.js";
import { handleLbConnection } from "../lb/balance.js";
import { ownListeners } from "../own-listeners.js";
import { batchPerTurn } from "../turn-batch.js";
import type { L7Event } from "../types.js";
import { startBroker, type Original } from "./broker-client.js";
import { dispatchConnection } from "./dispatch.js";
import { AgentAnswers } from "./dns-answers.js";
import { DnsOrigins } from "./dns-origins.js";
import { HostMap } from "./host-map.js";
import { hostsRefusal } from "./hosts-wire.js";
import {
  MAX_L7_BATCH,
  toProxy,
  type FromProxy,
  type L7Flow,
  type ProxyConfig,
  type ToProxy,
} from "./protocol.js";
import { PolicyTable, plainAddress, type Addr } from "./table.js";

function send(m: FromProxy): void {
  if (process.send && process.connected) process.send(m);
}

/**
 * L7 events go to the agent in batches (turn-batch.ts): those of one turn of the event loop in
 * one IPC message, at most MAX_L7_BATCH, so a busy proxy pays one serialisation and one pipe
 * write per batch instead of per request.
 */
const queueL7 = batchPerTurn<L7Flow>((events) => {
  if (events.length === 1) send({ type: "l7", ...(events[0] as L7Flow) });
  else send({ type: "l7-batch", events });
}, MAX_L7_BATCH);
function sendL7(event: L7Event, src: Addr, dst: Addr): void {
  queueL7({ event, src, dst });
}

function fatal(message: string): never {
  send({ type: "fatal", message });
  process.exit(1);
}

async function main(): Promise<void> {
  const raw = process.argv[2];
  if (!raw) fatal("usage: main.js <config JSON>");
  const cfg = JSON.parse(raw) as ProxyConfig;
  const hosts = new HostMap();
  let table = new PolicyTable({ version: 0, ipcache: [], endpoints: [], l7: [] }, hosts);
  const lookup = {
    forConnection: (k: Parameters<PolicyTable["forConnection"]>[0]) => table.forConnection(k),
  };
  const answers = new AgentAnswers(send);

  const onMessage = (msg: ToProxy): void => {
    if (msg.type === "snapshot") {
      table = new PolicyTable(msg.snapshot, hosts);
      send({ type: "ack", version: table.version });
    } else if (msg.type === "hosts") {
      send({ type: "hosts-ack", ...hosts.delta(msg) });
    } else if (msg.type === "hosts-full") {
      const r = hosts.full(msg);
      if (r) send({ type: "hosts-ack", ...r });
    } else if (msg.type === "identity-of") {
      send({ type: "identity", id: msg.id, identity: table.identityOf(msg.address) });
    } else if (msg.type === "dns-forget") {
      answers.forgetPairs(msg.pairs);
      send({ type: "dns-forgot", id: msg.id });
    } else answers.done(msg.id, msg.ok, msg.until);
  };
  process.on("message", (m: unknown) => {
    const msg = toProxy(m);
    if (msg) onMessage(msg);
    // A malformed delta or part is refused at once, naming what is wrong: the table held stays,
    // and the agent does not send that content again (without a readable `to` there is no one to answer).
    else {
      const bad = hostsRefusal(m);
      if (bad) send({ type: "hosts-ack", ...hosts.refuse(bad.type, bad.to, bad.why) });
    }
  });
  // The agent is gone: so is the reason to run.
  process.on("disconnect", () => process.exit(0));

  // Forked while this process is still root (ctnetlink needs CAP_NET_ADMIN); it leaves with us.
  const ct = await startBroker(fileURLToPath(new URL("./ctbroker.js", import.meta.url)), () =>
    fatal("the conntrack broker exited"),
  );
  const originalDst = (proto: "tcp" | "udp", local: Addr, remote: Addr): Promise<Original | undefined> =>
    ct.lookup(proto, local, remote);
  const sinkFor =
    (src: Addr, dst: Addr) =>
    (event: L7Event): void =>
      sendL7(event, src, dst);

  /**
   * A connection whose original destination is one of this proxy's own listeners was not
   * redirected here: it was sent to the proxy itself (or by the proxy itself, forwarding such a
   * one). Forwarding it would open a connection to the proxy again, each turn one more (an
   * amplification loop), whatever path admitted it (allowAll, L7 rules on that port, a frontend or
   * backend that is the node's own address). It is refused at once: the check is a compare against
   * the configured addresses and ports, no syscall. A listener on every address (0.0.0.0, ::) is
   * reached on any address with its port.
   */
  const own = ownListeners(
    [cfg.ipv4, cfg.ipv6].flatMap((h) => (h === undefined ? [] : [h])),
    [cfg.l7Port, cfg.dnsPort],
  );
  const isSelf = (dst: Original): boolean => own(dst.address, dst.port);
  const refuseSelf = (sock: net.Socket, remote: Addr, dst: Original): void => {
    sendL7(
      {
        type: "http",
        verdict: "error",
        srcIdentity: fromHost(dst) ? ID.host : table.identityOf(remote.address),
        dstIdentity: ID.host,
        endpoint: "",
        direction: "egress",
        reason: "sent to the L7 proxy itself, not redirected to it",
      },
      remote,
      dst,
    );
    sock.resetAndDestroy();
  };

  // Upstream HTTP/2 sessions of lb-l7 services, one per backend, shared by every client connection.
  const sessions = new H2Sessions();
  const servers: net.Server[] = [];
  const dns: DnsProxy[] = [];
  let saidNoMarks = false;
  for (const host of [cfg.ipv4, cfg.ipv6]) {
    if (host === undefined) continue;
    const server = net.createServer({ allowHalfOpen: true }, (sock) => {
      sock.on("error", () => undefined);
      const local = { address: plainAddress(sock.localAddress ?? ""), port: sock.localPort ?? 0 };
      const remote = { address: plainAddress(sock.remoteAddress ?? ""), port: sock.remotePort ?? 0 };
      void originalDst("tcp", local, remote).then((dst) => {
        if (dst && isSelf(dst)) return refuseSelf(sock, remote, dst);
        if (dst && (dst.mark & CT_SERVICE) !== 0) return balance(sock, remote, dst);
        const info = dst ? table.identify(remote, dst, 6, fromHost(dst)) : undefined;
        if (!dst || !info) {
          sock.resetAndDestroy();
          return;
        }
        dispatchConnection(sock, info, {
          lookup,
          sink: sinkFor(remote, dst),
          connectUpstream: (h, p) => net.connect({ host: h, port: p }),
          ...(cfg.secretsDir !== undefined ? { secretsDir: cfg.secretsDir } : {}),
        });
      });
    });
    /** A connection the LB table redirected (an lb-l7 frontend): balanced per request. */
    const balance = (sock: net.Socket, remote: Addr, dst: Original): void => {
      const { address, port } = dst;
      if (!table.lb.frontend(address, port)) return void sock.resetAndDestroy(); // not (or no longer) ours
      const host = fromHost(dst);
      const srcIdentity = host ? ID.host : table.identityOf(remote.address);
      handleLbConnection(
        sock,
        {
          client: remote,
          srcIdentity,
          endpoint: host ? "" : (table.endpointByIp(remote.address)?.name ?? ""),
        },
        {
          service: () => table.lb.frontend(address, port),
          backends: (s) => table.lb.backendsFor(s, srcIdentity),
          identityOf: (a) => table.identityOf(a),
          sessions,
          connectUpstream: (h, p) => net.connect({ host: h, port: p }),
          // The flow's server is the backend that answered the request (the ClusterIP when none did).
          sink: (event) => sendL7(event, remote, event.server ?? dst),
        },
      );
    };
    await new Promise<void>((res, rej) => {
      server.once("error", rej);
      server.listen({ host, port: cfg.l7Port, ipv6Only: host.includes(":") }, () => res());
    });
    servers.push(server);
    // Conntrack's answers for UDP sources, reused while the datagrams' ct id matches (dns-origins.ts).
    const origins = new DnsOrigins(ct, { address: host, port: cfg.dnsPort });
    const d = new DnsProxy({
      listen: { host, udpPort: cfg.dnsPort, tcpPort: cfg.dnsPort },
      lookup,
      identify: (src, proto) => {
        // The verdict from the table of the moment, whether conntrack's facts were cached or asked.
        const judge = (dst: Original | undefined) =>
          dst ? table.identify(src, dst, proto === "UDP" ? 17 : 6, fromHost(dst)) : undefined;
        const dst = origins.of(src, proto);
        return dst instanceof Promise ? dst.then(judge) : judge(dst);
      },
      onAnswer: (endpoint, name, ips, ttl) => answers.onAnswer(endpoint, name, ips, ttl),
      sink: (e) => {
        const { client, server, ...event } = e;
        const none = { address: "", port: 0 };
        sendL7(event, client ?? none, server ?? none);
      },
    });
    await d.start();
    dns.push(d);
    if (d.noPacketMarks !== undefined && !saidNoMarks) {
      saidNoMarks = true;
      process.stderr.write(
        `membrane proxy: DNS queries over UDP carry no conntrack id (${d.noPacketMarks}): every query asks the conntrack broker\n`,
      );
    }
  }
  dropPrivileges(cfg);
  send({ type: "ready" });
}

/**
 * Least privilege: every socket is bound, the conntrack broker forked: the
 * process that parses hostile bytes gives up root for the proxy user (no
 * capabilities, no supplementary groups). Its group stays the proxy group,
 * which the kernel recognises on its upstream sockets.
 */
function dropPrivileges(cfg: ProxyConfig): void {
  if (cfg.uid === undefined || process.getuid?.() !== 0) return;
  const gid = process.getgid?.() ?? 0;
  process.setgroups?.([gid]);
  process.setuid?.(cfg.uid);
  if (process.getuid?.() !== cfg.uid) fatal(`could not drop root to uid ${cfg.uid}`);
}

const fromHost = (o: Original): boolean => (o.mark & CT_FROM_HOST) !== 0;

main().catch((e: unknown) => fatal(e instanceof Error ? e.message : String(e)));
