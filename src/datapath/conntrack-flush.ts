/**
 * Resets the established connections that a newly added L7 redirect covers,
 * so that their next connection goes through the proxy.
 *
 *   enforce: reconciler.apply(next) ok
 *        |  BypassResetter.afterApply(next)
 *        v
 *   redirectCandidates(prev, next) --none--> done (no process started)
 *        | some endpoint directions gained a redirect
 *        v
 *   ctnetlink/child.js (node netns): dump entries without a redirect/proxy mark bit
 *        |  bypassing(entries, next): the connections a redirect now covers
 *        v
 *   ss -K in each affected endpoint's netns: destroy its socket of the connection
 *        |  (SOCK_DESTROY: its owner gets ECONNABORTED, the peer a RST -> ECONNRESET)
 *        v
 *   child.js: delete the conntrack entries (IPCTNL_MSG_CT_DELETE by original tuple)
 *
 * Why both: destroying the endpoint's socket gives both ends a prompt, clean
 * failure (the RST still passes as "established" because its entry exists);
 * deleting the entry afterwards makes sure nothing more of that connection
 * passes as established, e.g. from a peer that ignores the RST or a UDP flow
 * (DNS), whose next packet is then a new connection and goes to the proxy.
 * Sockets first, entries second: without its entry the RST would be dropped
 * as ct invalid.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import { bypassing, redirectCandidates, SKIP_MARK_BITS, type Bypass, type CtEntry } from "./bypass.js";
import { runRaw } from "./exec.js";
import { IPPROTO_TCP } from "../abi/ctnetlink-wire.js";
import type { DatapathState } from "./types.js";

export interface BypassResetParams {
  /** The node's network namespace (where conntrack is); undefined = the current one. */
  nodeNetns?: string;
  /** Longest a dump, delete or `ss` may take, in ms. Default 10 s. */
  timeoutMs?: number;
}

export interface BypassResetResult {
  /** Connections that bypassed a new redirect. */
  connections: number;
  /** Endpoint sockets destroyed (each sends its peer a RST). */
  socketsDestroyed: number;
  /** Conntrack entries deleted. */
  entriesDeleted: number;
  /** Time the reset took (dump, sockets, deletes), in ms; 0 when nothing was to do. */
  ms: number;
}

/** Remembers the last state whose bypassing connections were reset; see the file comment. */
export class BypassResetter {
  private prev: DatapathState | undefined;

  constructor(private readonly p: BypassResetParams = {}) {}

  /**
   * Call after the kernel accepted `next`. `netnsOf` names an endpoint's
   * namespace. Resolves with what was reset (zeros when no redirect was
   * added); throws BYPASS_RESET_FAILED when the reset could not be done, and
   * then tries again after the next apply.
   */
  async afterApply(
    next: DatapathState,
    netnsOf: (endpointId: number) => string | undefined,
  ): Promise<BypassResetResult> {
    const candidates = redirectCandidates(this.prev, next);
    const result: BypassResetResult = { connections: 0, socketsDestroyed: 0, entriesDeleted: 0, ms: 0 };
    if (candidates.size === 0) {
      this.prev = next;
      return result;
    }
    const t0 = performance.now();
    // Only connections of the endpoints that gained a redirect cross into the agent.
    const addresses = next.endpoints.flatMap((ep) =>
      candidates.has(`${ep.id}:in`) || candidates.has(`${ep.id}:out`)
        ? [ep.ipv4, ep.ipv6].filter((a): a is string => a !== undefined)
        : [],
    );
    const ct = ConntrackChild.start(this.p, addresses);
    try {
      const dump = await ct.dump();
      const found = bypassing(dump.entries, next, candidates, dump.local);
      result.connections = found.length;
      const problems: string[] = [];
      for (const [id, list] of groupByEndpoint(found)) {
        const netns = netnsOf(id);
        if (netns === undefined) continue; // gone: its connections went with it
        const r = await destroySockets(netns, list, this.p.timeoutMs);
        result.socketsDestroyed += r.destroyed;
        if (r.problem !== undefined) problems.push(r.problem);
      }
      const del = await ct.delete(found.map((b) => b.entry));
      result.entriesDeleted = del.deleted;
      problems.push(...del.failed);
      if (problems.length > 0) throw failed(problems.slice(0, 3).join("; "));
      result.ms = Math.round(performance.now() - t0);
      this.prev = next;
      return result;
    } finally {
      ct.close();
    }
  }
}

function failed(why: string, cause?: unknown): MembraneError {
  return new MembraneError(
    "BYPASS_RESET_FAILED",
    `Cannot reset the connections a new L7 redirect covers: ${why}`,
    {
      ...(cause !== undefined ? { cause } : {}),
      hint: "They keep bypassing the proxy until they close; the agent tries again after the next apply.",
    },
  );
}

/** The endpoint-side (local, peer) address pairs of TCP connections, per endpoint. */
function groupByEndpoint(found: readonly Bypass[]): Map<number, Bypass["sides"]> {
  const m = new Map<number, Bypass["sides"]>();
  for (const b of found) {
    if (b.entry.proto !== IPPROTO_TCP) continue; // UDP: deleting the entry is enough
    for (const s of b.sides) {
      const list = m.get(s.endpointId) ?? [];
      list.push(s);
      m.set(s.endpointId, list);
    }
  }
  return m;
}

const hostPort = (a: { address: string; port: number }): string =>
  a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;

/** Destroys the endpoint's TCP sockets of these connections (`ss -K`, SOCK_DESTROY), 64 per call. */
async function destroySockets(
  netns: string,
  sides: Bypass["sides"],
  timeoutMs = 10_000,
): Promise<{ destroyed: number; problem?: string }> {
  let destroyed = 0;
  for (let i = 0; i < sides.length; i += 64) {
    const filter = sides
      .slice(i, i + 64)
      .map((s) => `( src ${hostPort(s.local)} and dst ${hostPort(s.peer)} )`)
      .join(" or ");
    const r = await runRaw(["ss", "-K", "-H", "-t", "-n", filter], { netns, timeoutMs });
    if (r.status !== 0)
      return { destroyed, problem: `ss -K in netns ${netns} failed: ${r.stderr.trim().slice(0, 200)}` };
    destroyed += r.stdout.split("\n").filter((l) => l.trim() !== "").length;
  }
  return { destroyed };
}

/** One run of ctnetlink/child.js in the node's namespace: a dump (entries without a SKIP_MARK_BITS bit), then one batch of deletes. */
export class ConntrackChild {
  private buf = "";
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private exited: string | undefined;
  private stderr = "";

  private constructor(
    private readonly proc: ReturnType<typeof spawn>,
    private readonly timeoutMs: number,
  ) {
    proc.stdout?.on("data", (d: Buffer) => {
      this.buf += d.toString("utf8");
      let i: number;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
      }
      this.waiter?.();
    });
    proc.stderr?.on("data", (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-1000)));
    proc.on("error", (e) => {
      this.exited = `could not start: ${e.message}`;
      this.waiter?.();
    });
    proc.on("exit", (code, signal) => {
      this.exited ??= `exited (${signal ?? `code ${code}`})${this.stderr ? `: ${this.stderr.trim()}` : ""}`;
      this.waiter?.();
    });
  }

  /** `addresses`: only entries from or to one of them (all when undefined). */
  static start(p: BypassResetParams, addresses?: readonly string[]): ConntrackChild {
    const script = fileURLToPath(new URL("./ctnetlink/child.js", import.meta.url));
    const cfg = JSON.stringify({ mark: 0, mask: SKIP_MARK_BITS, ...(addresses ? { addresses } : {}) });
    const argv =
      p.nodeNetns === undefined
        ? [process.execPath, script, cfg]
        : ["ip", "netns", "exec", p.nodeNetns, process.execPath, script, cfg];
    const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    proc.stdin?.on("error", () => undefined);
    return new ConntrackChild(proc, p.timeoutMs ?? 10_000);
  }

  private async line(what: string): Promise<Record<string, unknown>> {
    const t0 = Date.now();
    while (this.lines.length === 0) {
      if (this.exited !== undefined) throw failed(`the conntrack process ${this.exited}`);
      const left = this.timeoutMs - (Date.now() - t0);
      if (left <= 0)
        throw failed(`the conntrack process did not answer the ${what} within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    const v = JSON.parse(this.lines.shift() as string) as Record<string, unknown>;
    if (typeof v["error"] === "string") throw failed(`conntrack ${what}: ${v["error"]}`);
    return v;
  }

  async dump(): Promise<{ entries: CtEntry[]; local: string[] }> {
    const v = await this.line("dump");
    return { entries: (v["entries"] ?? []) as CtEntry[], local: (v["local"] ?? []) as string[] };
  }

  async delete(entries: readonly CtEntry[]): Promise<{ deleted: number; failed: string[] }> {
    const tuples = entries.map(({ proto, src, srcPort, dst, dstPort }) => ({
      proto,
      src,
      srcPort,
      dst,
      dstPort,
    }));
    this.proc.stdin?.write(JSON.stringify({ delete: tuples }) + "\n");
    const v = await this.line("delete");
    return { deleted: Number(v["deleted"] ?? 0), failed: (v["failed"] ?? []) as string[] };
  }

  close(): void {
    this.proc.stdin?.end();
    if (this.exited === undefined) this.proc.kill();
  }
}
