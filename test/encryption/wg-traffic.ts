// Real packets for the encryption tests: a capture of everything on the lab's underlay bridge
// (tcpdump in the underlay namespace), UDP receivers and senders of marker payloads (socat in
// pod namespaces). Every process is started in its own group and killed by it.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { runRaw } from "../../src/datapath/exec.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function killGroup(p: ChildProcess, sig: NodeJS.Signals = "SIGKILL"): void {
  try {
    if (p.pid !== undefined) process.kill(-p.pid, sig);
  } catch {
    /* gone */
  }
}

const exited = (p: ChildProcess): Promise<void> =>
  p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => p.once("exit", () => r()));

/** tcpdump -i any in the underlay namespace (every bridge port: br0 itself sees only what is for it), every byte of every frame, to `file`. */
export class Capture {
  private constructor(
    private readonly p: ChildProcess,
    readonly file: string,
    private readonly err: () => string,
  ) {}

  /** tcpdump's standard error (its counts after stop()). */
  stderr(): string {
    return this.err();
  }

  static async start(netns: string, file: string): Promise<Capture> {
    const p = spawn(
      "ip",
      [
        "netns",
        "exec",
        netns,
        "tcpdump",
        "-i",
        "any",
        "--immediate-mode",
        "-U",
        "-s",
        "0",
        "-Z",
        "root",
        "-w",
        file,
      ],
      {
        stdio: ["ignore", "ignore", "pipe"],
        detached: true,
      },
    );
    let err = "";
    p.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    for (let i = 0; i < 100 && !err.includes("listening on"); i++) await sleep(50);
    if (!err.includes("listening on")) {
      killGroup(p);
      throw new Error(`tcpdump did not start: ${err}`);
    }
    return new Capture(p, file, () => err);
  }

  /** Stops the capture (SIGINT: tcpdump flushes) and returns the whole file. */
  async stop(): Promise<Buffer> {
    // --immediate-mode hands each packet over at once (else libpcap's blocks wait up to 1 s and a
    // SIGINT loses the last one); the pause lets the last packets reach the file.
    await sleep(300);
    killGroup(this.p, "SIGINT");
    await Promise.race([exited(this.p), sleep(3000)]);
    killGroup(this.p);
    return readFileSync(this.file);
  }

  kill(): void {
    killGroup(this.p);
  }
}

/** `socat -u UDP-RECV:port STDOUT` in a namespace: every datagram's text, in order. */
export class UdpSink {
  private text = "";
  private constructor(private readonly p: ChildProcess) {
    p.stdout?.on("data", (d: Buffer) => (this.text += d.toString("latin1")));
  }

  static async start(netns: string, port: number): Promise<UdpSink> {
    const p = spawn("ip", ["netns", "exec", netns, "socat", "-u", `UDP-RECV:${port},reuseaddr`, "STDOUT"], {
      stdio: ["ignore", "pipe", "ignore"],
      detached: true,
    });
    await sleep(200);
    return new UdpSink(p);
  }

  received(): string {
    return this.text;
  }

  /** Waits (safety net `ms`) until `marker` arrived; true when it did. */
  async waitFor(marker: string, ms = 5000): Promise<boolean> {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(50))
      if (this.text.includes(marker)) return true;
    return this.text.includes(marker);
  }

  stop(): void {
    killGroup(this.p);
  }
}

/** Sends `text` as one UDP datagram from `netns` (optionally from address `bind`). */
export async function sendUdp(
  netns: string,
  ip: string,
  port: number,
  text: string,
  bind?: string,
): Promise<void> {
  const r = await runRaw(["socat", "-u", "-", `UDP-SENDTO:${ip}:${port}${bind ? `,bind=${bind}` : ""}`], {
    netns,
    stdin: text,
  });
  if (r.status !== 0) throw new Error(`socat to ${ip}:${port} from ${netns}: ${r.stderr}`);
}

/** A datagram `<marker>-<n>` every `everyMs` from `netns` until stop(); stop() returns how many were sent. */
export class UdpStream {
  private n = 0;
  private running = true;
  private done: Promise<void>;
  constructor(netns: string, ip: string, port: number, marker: string, everyMs = 50) {
    const p = spawn("ip", ["netns", "exec", netns, "socat", "-u", "-", `UDP-SENDTO:${ip}:${port}`], {
      stdio: ["pipe", "ignore", "ignore"],
      detached: true,
    });
    this.done = (async () => {
      while (this.running) {
        p.stdin?.write(`${marker}-${this.n++};`);
        await sleep(everyMs);
      }
      p.stdin?.end();
      await Promise.race([exited(p), sleep(1000)]);
      killGroup(p);
    })();
  }

  async stop(): Promise<number> {
    this.running = false;
    await this.done;
    return this.n;
  }
}

/** `socat -u TCP-LISTEN:port STDOUT` in a namespace: one connection's bytes, and when each chunk arrived. */
export class TcpSink {
  private text = "";
  /** Arrival times (ms) of the chunks read. */
  readonly arrivals: number[] = [];
  private constructor(private readonly p: ChildProcess) {
    p.stdout?.on("data", (d: Buffer) => {
      this.text += d.toString("latin1");
      this.arrivals.push(Date.now());
    });
  }

  static async start(netns: string, ip: string, port: number): Promise<TcpSink> {
    const p = spawn(
      "ip",
      ["netns", "exec", netns, "socat", "-u", `TCP-LISTEN:${port},bind=${ip},reuseaddr`, "STDOUT"],
      { stdio: ["ignore", "pipe", "ignore"], detached: true },
    );
    await sleep(300);
    return new TcpSink(p);
  }

  received(): string {
    return this.text;
  }

  /** The longest pause between two chunks in [from, to] (ms). */
  maxGap(from: number, to: number): number {
    const t = this.arrivals.filter((x) => x >= from && x <= to);
    let gap = 0;
    for (let i = 1; i < t.length; i++) gap = Math.max(gap, (t[i] as number) - (t[i - 1] as number));
    return gap;
  }

  async waitFor(marker: string, ms = 5000): Promise<boolean> {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(50))
      if (this.text.includes(marker)) return true;
    return this.text.includes(marker);
  }

  stop(): void {
    killGroup(this.p);
  }
}

/**
 * One TCP connection from `netns` (`socat -u - TCP:ip:port`) writing `<marker>-<n>;` every
 * `everyMs` until stop(), which closes it cleanly and returns how many were written and how socat
 * ended (a reset ends it with an error and a non-zero code).
 */
export class TcpStream {
  private n = 0;
  private running = true;
  private readonly done: Promise<{ sent: number; code: number | null; stderr: string }>;
  constructor(netns: string, ip: string, port: number, marker: string, everyMs = 20) {
    const p = spawn("ip", ["netns", "exec", netns, "socat", "-u", "-", `TCP:${ip}:${port}`], {
      stdio: ["pipe", "ignore", "pipe"],
      detached: true,
    });
    let stderr = "";
    p.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    p.stdin?.on("error", () => undefined); // a reset: socat is gone; reported by its exit code
    this.done = (async () => {
      while (this.running && p.exitCode === null) {
        p.stdin?.write(`${marker}-${this.n++};`);
        await sleep(everyMs);
      }
      p.stdin?.end();
      await Promise.race([exited(p), sleep(5000)]);
      killGroup(p);
      return { sent: this.n, code: p.exitCode, stderr };
    })();
  }

  stop(): Promise<{ sent: number; code: number | null; stderr: string }> {
    this.running = false;
    return this.done;
  }
}

/** TCP reset and abort counters of a namespace (nstat, absolute, history untouched). */
export async function tcpResetCounters(netns: string): Promise<Record<string, number>> {
  const names = ["TcpEstabResets", "TcpOutRsts", "TcpExtTCPAbortOnData", "TcpExtTCPAbortOnTimeout"];
  const r = await runRaw(["nstat", "-asz", ...names], { netns });
  const out: Record<string, number> = {};
  for (const line of r.stdout.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && names.includes(k)) out[k] = Number(v);
  }
  return out;
}
