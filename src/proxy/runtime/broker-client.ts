/**
 * The proxy's side of the conntrack broker (ctbroker.ts): forks it while
 * this process is still root and asks it for original destinations.
 *
 *   lookup(proto, local, remote) --IPC {id, proto, local, remote}--> broker --ctnetlink--> kernel
 *        <--------------------------- {id, address?, port?, mark?, ctId?} ---
 *
 * The lookups of one turn (the datagrams of one recvmmsg, say) go in one
 * message, {batch: [...]}, flushed by a microtask; the broker answers those
 * of its turn likewise: one pipe write and one wake-up each way per turn,
 * not per query.
 *
 * Every lookup is bounded (2 s, on one timer: deadlines.ts); no answer is
 * no destination, and the caller fails closed. Without the broker no
 * connection can be placed: `onExit` (the proxy exits, the agent restarts it).
 */
import { fork } from "node:child_process";
import { TimeoutQueue } from "../deadlines.js";
import { MAX_BROKER_BATCH, type BrokerRequest } from "./ctbroker-serve.js";
import type { Addr } from "./table.js";

/**
 * The broker's young generation, fixed at 8 MB semi-spaces: each lookup leaves a few hundred bytes
 * of IPC garbage, and with V8's default (1 MB, grown only when much survives) the broker ran a
 * scavenge every ~150 lookups, each holding every lookup in flight (0.3-0.5 ms). Little survives
 * in the broker, so a scavenge of a larger space costs about the same, ~8x less often.
 */
const BROKER_NODE_FLAGS = ["--min-semi-space-size=8", "--max-semi-space-size=8"];

/** An original destination, with the connection's mark (CT_FROM_HOST: the node itself is the client). */
export interface Original extends Addr {
  readonly mark: number;
  /** The conntrack entry's id (nft's `ct id`; 0: unknown): what dns-origins.ts ties datagrams to. */
  readonly ctId: number;
}

export interface Broker {
  lookup(proto: "tcp" | "udp", local: Addr, remote: Addr): Promise<Original | undefined>;
  /** Lets the broker go (it exits when its channel closes) without calling `onExit`: tests, the bench. */
  close(): void;
}

interface BrokerAnswer {
  ready?: boolean;
  fatal?: string;
  id?: number;
  address?: string;
  port?: number;
  mark?: number;
  ctId?: unknown;
}

const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;

/**
 * The answer's destination, or undefined (no entry, or an answer that is not well formed: fail
 * closed). An id that is not a 32-bit unsigned integer refuses the whole answer: a cache keyed by
 * it must never hold a value no packet mark can carry. An absent id (a broker of an earlier
 * version) is 0, which is never cached.
 */
function originalOf(m: BrokerAnswer): Original | undefined {
  if (typeof m.address !== "string" || typeof m.port !== "number") return undefined;
  const ctId = m.ctId === undefined ? 0 : m.ctId;
  if (!isU32(ctId)) return undefined;
  return { address: m.address, port: m.port, mark: typeof m.mark === "number" ? m.mark : 0, ctId };
}

/** Forks `script` (the broker: ctbroker.js; the proxy benchmark's stand-in) and waits for it to be ready. */
export async function startBroker(script: string, onExit: () => void): Promise<Broker> {
  const child = fork(script, [], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: BROKER_NODE_FLAGS,
  });
  const waiting = new Map<number, (a: Original | undefined) => void>();
  let next = 1;
  // Every lookup's 2 s bound on one timer (deadlines.ts), not a timer per connection or query.
  const deadlines = new TimeoutQueue(2000);
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`conntrack broker exited (${code})`)));
    const answer = (m: BrokerAnswer): void => {
      if (typeof m.id !== "number") return;
      const done = waiting.get(m.id);
      waiting.delete(m.id);
      done?.(originalOf(m));
    };
    child.on("message", (m: BrokerAnswer & { batch?: unknown }) => {
      if (m.ready) return resolve();
      if (m.fatal !== undefined) return reject(new Error(`conntrack broker: ${m.fatal}`));
      if (Array.isArray(m.batch)) for (const a of m.batch as BrokerAnswer[]) answer(a);
      else answer(m);
    });
  });
  child.on("exit", onExit);
  let queue: BrokerRequest[] = [];
  const flush = (): void => {
    const q = queue;
    queue = [];
    if (!child.connected) return; // its exit ends this process; the deadlines answer meanwhile
    if (q.length === 1) child.send(q[0] as BrokerRequest);
    else for (let i = 0; i < q.length; i += MAX_BROKER_BATCH) child.send({ batch: q.slice(i, i + MAX_BROKER_BATCH) }); // prettier-ignore
  };
  return {
    close: () => {
      child.off("exit", onExit);
      if (child.connected) child.disconnect();
    },
    lookup: (proto, local, remote) =>
      new Promise((resolve) => {
        const id = next++;
        const deadline = deadlines.add(() => {
          waiting.delete(id);
          resolve(undefined);
        });
        waiting.set(id, (a) => {
          deadline.cancel();
          resolve(a);
        });
        if (queue.push({ id, proto, local, remote }) === 1) queueMicrotask(flush);
      }),
  };
}
