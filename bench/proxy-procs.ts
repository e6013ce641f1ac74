/**
 * The proxy benchmark's cast besides the proxies: a minimal upstream HTTP
 * server and DNS resolver (cheap, so that they are not what limits the
 * figures), forked Node children driven over IPC, and CPU accounting from
 * /proc so a run shows who was busy.
 *
 *   upstream: raw TCP, answers every "\r\n\r\n" with a fixed 200 response
 *   resolver: raw UDP, answers every query with one A record (10.0.0.1)
 */
import { execFileSync, fork, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { fromProxy } from "../src/proxy/runtime/protocol.js";

const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}',
  "latin1",
);

export interface Closable {
  readonly port: number;
  close(): Promise<void>;
}

/** Requests are bodiless GETs: each end of a head ("\r\n\r\n") is one request. */
export async function startUpstream(): Promise<Closable> {
  const socks = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (s) => {
    socks.add(s);
    let state = 0; // how much of "\r\n\r\n" was just seen
    s.on("data", (d: Buffer) => {
      let n = 0;
      for (const b of d) {
        if (b === (state % 2 === 0 ? 13 : 10)) state++;
        else state = b === 13 ? 1 : 0;
        if (state === 4) {
          n++;
          state = 0;
        }
      }
      if (n === 1) s.write(RESPONSE);
      else if (n > 1) s.write(Buffer.concat(Array.from({ length: n }, () => RESPONSE)));
    });
    s.on("error", () => undefined);
    s.on("close", () => socks.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** End of the question section: after the name's labels, QTYPE and QCLASS. */
function questionEnd(q: Buffer): number {
  let i = 12;
  while (i < q.length && q[i] !== 0) i += (q[i] ?? 0) + 1;
  return i + 5;
}

const ANSWER = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);

/** The resolver on host:port (default 127.0.0.1, a random port). */
export async function startResolver(host = "127.0.0.1", port = 0): Promise<Closable> {
  const sock = dgram.createSocket("udp4");
  sock.on("message", (q, rinfo) => {
    if (q.length < 17) return;
    const qEnd = questionEnd(q);
    if (qEnd > q.length) return;
    const head = Buffer.from([q[0] ?? 0, q[1] ?? 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    sock.send([head, q.subarray(12, qEnd), ANSWER], rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(port, host, r));
  return { port: sock.address().port, close: () => new Promise((r) => sock.close(() => r())) };
}

/** A forked bench script (dist/bench/<script>) that sends one message when ready. */
export async function forkReady<T>(
  script: string,
  args: string[],
  execArgv: readonly string[] = [],
  env: Readonly<Record<string, string>> = {},
): Promise<{ child: ChildProcess; ready: T }> {
  const child = fork(fileURLToPath(new URL(script, import.meta.url)), args, {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    execArgv: [...execArgv],
    env: { ...process.env, ...env },
  });
  const ready = await new Promise<T>((res, rej) => {
    child.once("message", (m) => res(m as T));
    child.once("exit", (code) => rej(new Error(`Cannot start ${script}: it exited with code ${code}`)));
  });
  return { child, ready };
}

/** The agent's default minimum life of a DNS-learned address (agent/controllers/names.ts), in ms. */
const DNS_MIN_TTL_MS = 3600_000;

/**
 * This process as the agent of a forked proxy-server.js: each message is checked as the agent
 * checks it (protocol.ts fromProxy); a `dns-answer` is answered `dns-done` at once, holding its
 * addresses for the default minimum TTL, as the agent answers an answer whose addresses it already
 * enforces (the bench's name always resolves to the same address); `dns-seen` is read and dropped.
 */
export function actAsAgent(child: ChildProcess): void {
  child.on("message", (raw: unknown) => {
    const m = fromProxy(raw);
    if (m?.type === "dns-answer" && child.connected)
      child.send({ type: "dns-done", id: m.id, ok: true, until: Date.now() + DNS_MIN_TTL_MS });
  });
}

/** Sends requests to a forked child and matches the replies by id. */
export class Rpc<Req, Res> {
  private next = 1;
  private readonly waiting = new Map<number, { res: (r: Res) => void; rej: (e: Error) => void }>();

  constructor(private readonly child: ChildProcess) {
    child.on("message", (m: { id?: number; result?: Res; error?: string }) => {
      const w = m.id === undefined ? undefined : this.waiting.get(m.id);
      if (!w || m.id === undefined) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined || m.result === undefined) w.rej(new Error(m.error ?? "no result"));
      else w.res(m.result);
    });
  }

  call(spec: Req): Promise<Res> {
    const id = this.next++;
    return new Promise((res, rej) => {
      this.waiting.set(id, { res, rej });
      this.child.send({ id, spec });
    });
  }
}

export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  if (child.connected) child.disconnect();
  else child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}

let clockTicks: number | undefined;

/** CPU seconds (user + system) a process used so far; 0 if it is gone. */
export function cpuSeconds(pid: number): number {
  clockTicks ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / clockTicks;
  } catch {
    return 0;
  }
}

/** The part of cpuSeconds spent in the kernel (system time): a proxy's datagrams and wakeups. */
export function cpuSystemSeconds(pid: number): number {
  clockTicks ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[12]) / clockTicks;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds the hypervisor took from this machine so far (steal, all CPUs): on a shared VM a
 * sample with steal ran on less machine than its neighbours did.
 */
export function stealSeconds(): number {
  clockTicks ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  const cpu = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  return Number(cpu.trim().split(/\s+/)[8] ?? 0) / clockTicks;
}

/** Direct children of `ppid` (nginx's workers of its master). */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === ppid) out.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}
