/**
 * Connections to backend endpoints, kept alive between requests (HTTP/1.1)
 * and bound to the gateway's source address when one is set (the address
 * the ipcache gives the reserved `ingress` identity, so that the backends'
 * ingress policy judges gateway traffic as coming from `ingress`).
 *
 *   acquire(addr, port) --idle socket of that endpoint | net.connect--> Socket
 *   release(socket)     --reusable: back to the idle list (capped), else destroyed
 */
import net from "node:net";
import { modifyHeaders } from "./filters.js";
import type { HeaderModifier } from "./model.js";

export interface UpstreamPoolParams {
  /** Source address of upstream connections (undefined: the kernel picks). */
  readonly localAddress?: string;
  /** Idle connections kept per endpoint. */
  readonly maxIdlePerEndpoint?: number;
  readonly idleTimeoutMs?: number;
}

export class UpstreamPool {
  private readonly idle = new Map<string, net.Socket[]>();
  private readonly maxIdle: number;
  private readonly idleMs: number;

  constructor(private readonly p: UpstreamPoolParams = {}) {
    this.maxIdle = p.maxIdlePerEndpoint ?? 16;
    this.idleMs = p.idleTimeoutMs ?? 30_000;
  }

  /** A pooled socket (reused: true) or a new connection. */
  acquire(address: string, port: number): { socket: net.Socket; reused: boolean } {
    const key = `${address}|${port}`;
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const s = list.pop() as net.Socket;
      s.removeAllListeners("close")
        .removeAllListeners("error")
        .removeAllListeners("data")
        .removeAllListeners("end");
      s.setTimeout(0);
      if (!s.destroyed && s.readyState === "open") return { socket: s, reused: true };
      s.destroy();
    }
    const socket = net.connect({
      host: address,
      port,
      ...(this.p.localAddress ? { localAddress: this.p.localAddress } : {}),
    });
    socket.setNoDelay(true);
    return { socket, reused: false };
  }

  release(address: string, port: number, s: net.Socket): void {
    const key = `${address}|${port}`;
    s.removeAllListeners("data")
      .removeAllListeners("end")
      .removeAllListeners("error")
      .removeAllListeners("close");
    s.removeAllListeners("timeout");
    const list = this.idle.get(key) ?? [];
    if (s.destroyed || list.length >= this.maxIdle) return void s.destroy();
    const drop = (): void => {
      const i = list.indexOf(s);
      if (i >= 0) list.splice(i, 1);
      s.destroy();
    };
    s.on("close", drop).on("error", drop).on("end", drop).on("data", drop);
    s.setTimeout(this.idleMs, drop);
    list.push(s);
    this.idle.set(key, list);
  }

  /** Closes every idle connection. */
  close(): void {
    for (const list of this.idle.values()) for (const s of list) s.destroy();
    this.idle.clear();
  }
}

/** The backend's response head as the client gets it: hop-by-hop fields ours, ResponseHeaderModifiers applied. */
export function rewriteHead(raw: Buffer, mods: readonly HeaderModifier[], keepAlive: boolean): Buffer {
  const lines = raw
    .toString("latin1")
    .split("\r\n")
    .filter((l) => l !== "");
  const statusLine = (lines[0] ?? "HTTP/1.1 502 Bad Gateway").replace(/^HTTP\/1\.0/, "HTTP/1.1");
  let fields = lines.slice(1).map((l) => {
    const c = l.indexOf(":");
    return { name: l.slice(0, c), value: l.slice(c + 1).trim() };
  });
  fields = fields.filter((f) => !["connection", "keep-alive"].includes(f.name.toLowerCase()));
  for (const m of mods) fields = modifyHeaders(fields, m);
  if (!keepAlive) fields.push({ name: "connection", value: "close" });
  return Buffer.from(
    [statusLine, ...fields.map((f) => `${f.name}: ${f.value}`)].join("\r\n") + "\r\n\r\n",
    "latin1",
  );
}
