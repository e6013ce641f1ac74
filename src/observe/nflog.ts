/**
 * NFLOG reader: the kernel's drop logs (`log group N prefix "mbr:d:..."`) as events.
 *
 *   kernel (node netns) --NETLINK_NETFILTER, NFULNL_MSG_PACKET--> NflogReader --> {prefix, packet}
 *
 * NFLOG is per network namespace, so a reader binds in the namespace it runs
 * in. NflogReader works in the current one; readNflogInNetns() starts
 * nflog-child.js under `ip netns exec NS` and relays its events as JSON lines.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createNetlink, type NetlinkMessage, type NetlinkSocket } from "netlink";

export interface NflogEvent {
  /** The rule's log prefix (NFULA_PREFIX), without the trailing NUL. */
  prefix: string;
  /** The packet from its IP header (NFULA_PAYLOAD). */
  packet: Buffer;
}

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_ULOG = 4;
const NFULNL_MSG_PACKET = NFNL_SUBSYS_ULOG << 8;
const NFULNL_MSG_CONFIG = (NFNL_SUBSYS_ULOG << 8) | 1;
const NFULA_CFG_CMD = 1;
const NFULA_CFG_MODE = 2;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_COPY_PACKET = 2;
const NLM_F_REQUEST = 1;
const NLM_F_ACK = 4;

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

function nfgen(group: number): Buffer {
  const b = Buffer.alloc(4); // family AF_UNSPEC, version 0, res_id = group (big-endian)
  b.writeUInt16BE(group, 2);
  return b;
}

/** Parses one NFULNL_MSG_PACKET payload (nfgenmsg + attributes). */
export function parseNflogPacket(data: Buffer): NflogEvent {
  let prefix = "";
  let packet = Buffer.alloc(0);
  for (let off = 4; off + 4 <= data.length;) {
    const len = data.readUInt16LE(off);
    const type = data.readUInt16LE(off + 2) & 0x7fff;
    if (len < 4) break;
    const value = data.subarray(off + 4, off + len);
    if (type === NFULA_PREFIX) prefix = value.toString("utf8").replace(/\0.*$/s, "");
    if (type === NFULA_PAYLOAD) packet = Buffer.from(value);
    off += (len + 3) & ~3;
  }
  return { prefix, packet };
}

/** Binds an NFLOG group in the current network namespace; emits "event" (NflogEvent) and "error". */
export class NflogReader extends EventEmitter {
  private readonly socket: NetlinkSocket;
  readonly group: number;

  constructor(params: { group: number }) {
    super();
    this.group = params.group;
    // ref: keep the process alive while bound (by default the socket is referenced only during requests).
    this.socket = createNetlink(NETLINK_NETFILTER);
    this.socket.ref(true);
    this.socket.on("message", (msgs: NetlinkMessage[]) => {
      for (const m of msgs) if (m.type === NFULNL_MSG_PACKET) this.emit("event", parseNflogPacket(m.data));
    });
    this.socket.on("error", (e) => this.emit("error", e));
  }

  /** Sends the bind and copy-mode configuration; resolves when the kernel acknowledged both. */
  async start(): Promise<void> {
    const mode = Buffer.alloc(6);
    mode.writeUInt32BE(0xffff, 0);
    mode[4] = NFULNL_COPY_PACKET;
    const opts = { flags: NLM_F_REQUEST | NLM_F_ACK };
    await this.socket.request(
      NFULNL_MSG_CONFIG,
      [nfgen(this.group), attr(NFULA_CFG_CMD, Buffer.from([NFULNL_CFG_CMD_BIND]))],
      opts,
    );
    await this.socket.request(NFULNL_MSG_CONFIG, [nfgen(this.group), attr(NFULA_CFG_MODE, mode)], opts);
  }

  stop(): void {
    this.socket.close();
  }
}

/**
 * Reads NFLOG group `group` inside network namespace `netns` (a child process);
 * resolves once the group is bound. Call stop() on the result to end it.
 */
export function readNflogInNetns(
  netns: string,
  group: number,
  onEvent: (e: NflogEvent) => void,
): Promise<{ stop: () => void }> {
  const child: ChildProcess = spawn(
    "ip",
    [
      "netns",
      "exec",
      netns,
      process.execPath,
      fileURLToPath(new URL("./nflog-child.js", import.meta.url)),
      String(group),
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolve, reject) => {
    const stdout = child.stdout;
    if (!stdout) return reject(new Error("nflog child has no stdout"));
    const rl = createInterface({ input: stdout });
    child.on("exit", (code) => reject(new Error(`nflog reader in ${netns} exited with ${code}`)));
    rl.on("line", (line) => {
      const msg = JSON.parse(line) as { ready?: boolean; prefix?: string; packet?: string };
      if (msg.ready) resolve({ stop: () => child.kill() });
      else onEvent({ prefix: msg.prefix ?? "", packet: Buffer.from(msg.packet ?? "", "base64") });
    });
  });
}
