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
