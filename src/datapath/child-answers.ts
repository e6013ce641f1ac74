/**
 * The answers of the agent's helper processes (nfnl/child.js, rtnl-child.js):
 * one JSON line each, `{"id": n, "ok": bool, "error"?: text, "errno"?: n}`,
 * handed to the waiter of that id. Anything else on the line is ignored, and
 * the fields are checked, not trusted: the lines come from another process.
 */
import { createInterface } from "node:readline";

export interface ChildAnswer {
  readonly ok: boolean;
  readonly error?: string;
  readonly errno?: number;
}

/** Routes each answer line of `stdout` to `waiters.get(id)` (removed once answered). */
export function routeAnswers(
  stdout: NodeJS.ReadableStream,
  waiters: Map<number, (a: ChildAnswer) => void>,
): void {
  createInterface({ input: stdout }).on("line", (line) => {
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof m !== "object" || m === null) return;
    const { id, ok, error, errno } = m as Record<string, unknown>;
    const w = typeof id === "number" ? waiters.get(id) : undefined;
    if (!w) return;
    waiters.delete(id as number);
    w({
      ok: ok === true,
      ...(typeof error === "string" ? { error: error.slice(0, 2000) } : {}),
      ...(typeof errno === "number" && Number.isInteger(errno) ? { errno } : {}),
    });
  });
}
