/**
 * Starts and feeds the gateway process (main.ts), in a network namespace
 * when one is named (`ip netns exec NS node FLAGS main.js CONFIG`), in its own
 * process group so that stop() ends it and nothing it started survives.
 *
 *   push(inputs) --IPC config v--> process --applied v (serving, error)--> the promise of push
 *                                  process --events--> onEvent   (each message checked: from-gateway.ts)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { PROXY_NODE_FLAGS } from "../proxy/runtime/node-flags.js";
import type { GatewayEvent } from "./exchange.js";
import { GatewayInbox, type GatewayApplied, type GatewayDrop } from "./from-gateway.js";
import type { GatewayInputs, GatewayProcessConfig } from "./protocol.js";
import { sourcesOf } from "./source.js";

export interface GatewayRunnerParams extends GatewayProcessConfig {
  readonly netns?: string;
  readonly onEvent?: (e: GatewayEvent) => void;
  readonly onExit?: (code: number | null) => void;
  /** Where a malformed message or event from the process is said (once per reason). */
  readonly logger?: Pick<Logger, "warn">;
}

export class GatewayRunner {
  private child: ChildProcess | undefined;
  private version = 0;
  private readonly waiting = new Map<number, (m: GatewayApplied) => void>();
  private readonly inbox: GatewayInbox;

  constructor(private readonly p: GatewayRunnerParams) {
    this.inbox = new GatewayInbox({
      ...(p.logger ? { logger: p.logger } : {}),
      ...(p.onEvent ? { onEvent: p.onEvent } : {}),
      onApplied: (m) => {
        this.waiting.get(m.version)?.(m);
        this.waiting.delete(m.version);
      },
    });
  }

  /** Messages and events from the process dropped as malformed, by reason. */
  get dropped(): Readonly<Partial<Record<GatewayDrop, number>>> {
    return this.inbox.dropped;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    const main = fileURLToPath(new URL("./main.js", import.meta.url));
    const cfg: GatewayProcessConfig = {
      secretsDir: this.p.secretsDir,
      ...sourcesOf(this.p),
    };
    // The proxy's V8 flags (young generation 8-32 MB): the gateway makes the same short-lived
    // garbage per request; without them it scavenged ~8x as often at 2,000 req/s after a quiet spell.
    const argv = [process.execPath, ...PROXY_NODE_FLAGS, main, JSON.stringify(cfg)];
    const [cmd, ...args] = this.p.netns ? ["ip", "netns", "exec", this.p.netns, ...argv] : argv;
    const child = spawn(cmd as string, args, {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      detached: true,
    });
    this.child = child;
    child.on("message", (m: unknown) => this.inbox.receive(m));
    child.on("exit", (code) => {
      this.child = undefined;
      for (const w of this.waiting.values())
        w({ type: "applied", version: -1, serving: [], error: "the gateway process exited" });
      this.waiting.clear();
      this.p.onExit?.(code);
    });
  }

  /** Sends the inputs; resolves with what the process serves once it applied them. */
  push(inputs: GatewayInputs, timeoutMs = 10_000): Promise<{ serving: readonly string[]; error?: string }> {
    const child = this.child;
    if (!child || !child.connected)
      return Promise.reject(
        new MembraneError("API_FAILED", "Cannot configure the gateway: its process is not running"),
      );
    const version = ++this.version;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(version);
        reject(new MembraneError("API_FAILED", `Cannot configure the gateway: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(version, (m) => {
        clearTimeout(t);
        resolve({ serving: m.serving, ...(m.error !== undefined ? { error: m.error } : {}) });
      });
      child.send({ type: "config", version, inputs });
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, 3000);
    await exited;
    clearTimeout(t);
  }
}
