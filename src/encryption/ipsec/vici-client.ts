/**
 * A VICI client over charon's unix socket: one request at a time on one connection (VICI answers
 * in order), streamed commands (register for the event, send the command, collect the events
 * until the response, unregister).
 *
 *   request("load-conn", {...}) ──packet──▶ charon ──response──▶ {success: "yes"} | ViciCommandError
 *   stream("list-sas", {}, "list-sa") ──▶ events... ──▶ response ──▶ the events' messages
 *
 * Every call has a deadline (charon busy or gone does not hang the agent); a broken connection
 * fails every pending call and the next call reconnects. Secrets are never logged here: a failed
 * command's error carries the command name and charon's errmsg, not what was sent.
 */
import { connect, type Socket } from "node:net";
import { MembraneError } from "../../errors.js";
import {
  decodePacket,
  encodePacket,
  PacketSplitter,
  PacketType,
  str,
  type ViciMessage,
  type ViciPacket,
} from "./vici-wire.js";

interface Waiter {
  readonly resolve: (p: ViciPacket) => void;
  readonly reject: (e: Error) => void;
}

export class ViciClient {
  private sock: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private readonly waiters: Waiter[] = [];
  private onEvent: ((p: ViciPacket) => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 10_000,
  ) {}

  private open(): Promise<Socket> {
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock);
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<Socket>((resolve, reject) => {
      const s = connect(this.socketPath);
      const splitter = new PacketSplitter();
      s.once("connect", () => {
        this.sock = s;
        this.connecting = undefined;
        resolve(s);
      });
      s.on("data", (d: Buffer) => {
        try {
          for (const body of splitter.push(d)) this.dispatch(decodePacket(body));
        } catch (e) {
          s.destroy(e as Error);
        }
      });
      const fail = (e: Error): void => {
        this.connecting = undefined;
        if (this.sock === s) this.sock = undefined;
        reject(e);
        for (const w of this.waiters.splice(0)) w.reject(e);
      };
      s.on("error", fail);
      s.on("close", () => fail(new Error("charon closed the VICI connection")));
    });
    return this.connecting;
  }

  private dispatch(p: ViciPacket): void {
    if (p.type === PacketType.EVENT) return this.onEvent?.(p);
    this.waiters.shift()?.resolve(p);
  }

  private async exchange(p: ViciPacket, what: string): Promise<ViciPacket> {
    const s = await this.open();
    return new Promise<ViciPacket>((resolve, reject) => {
      const t = setTimeout(() => {
        reject(new Error(`no answer to ${what} in ${this.timeoutMs} ms`));
        s.destroy(); // the answer, if it comes, would be taken for the next call's
      }, this.timeoutMs);
      this.waiters.push({
        resolve: (x) => (clearTimeout(t), resolve(x)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      s.write(encodePacket(p));
    });
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const r = this.chain.then(f, f);
    this.chain = r.catch(() => undefined);
    return r;
  }

  /** A command; its response (a `success: no` answer is an error naming the command). */
  request(command: string, message: ViciMessage = {}): Promise<ViciMessage> {
    return this.serial(async () => {
      const r = await this.exchange({ type: PacketType.CMD_REQUEST, name: command, message }, command).catch(
        (e: Error) => {
          throw fail(command, e.message, e);
        },
      );
      if (r.type === PacketType.CMD_UNKNOWN) throw fail(command, "charon does not know this command");
      if (r.type !== PacketType.CMD_RESPONSE) throw fail(command, `answer of packet type ${r.type}`);
      const m = r.message ?? {};
      if (str(m, "success") === "no") throw fail(command, str(m, "errmsg") ?? "failed");
      return m;
    });
  }

  /** A streamed command: the messages of every `event` it produced, then its response. */
  stream(
    command: string,
    message: ViciMessage,
    event: string,
  ): Promise<{ events: ViciMessage[]; response: ViciMessage }> {
    return this.serial(async () => {
      const events: ViciMessage[] = [];
      const reg = await this.exchange({ type: PacketType.EVENT_REGISTER, name: event }, `register ${event}`);
      if (reg.type !== PacketType.EVENT_CONFIRM) throw fail(command, `charon refused the event ${event}`);
      this.onEvent = (p) => {
        if (p.name === event && p.message) events.push(p.message);
      };
      try {
        const r = await this.exchange({ type: PacketType.CMD_REQUEST, name: command, message }, command);
        if (r.type !== PacketType.CMD_RESPONSE) throw fail(command, `answer of packet type ${r.type}`);
        return { events, response: r.message ?? {} };
      } finally {
        this.onEvent = undefined;
        await this.exchange({ type: PacketType.EVENT_UNREGISTER, name: event }, `unregister ${event}`).catch(
          () => undefined,
        );
      }
    });
  }

  close(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }
}

function fail(command: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("ENCRYPTION_FAILED", `Cannot run the IPsec command ${command}: ${why}`, {
    ...(cause !== undefined ? { cause } : {}),
    hint: "see charon's log in <state-dir>/ipsec/charon.log",
  });
}
