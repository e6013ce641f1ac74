/**
 * The node-side rtnetlink process: Node cannot enter a network namespace, so
 * node-links.ts starts this file in a named node's namespace (`nsenter
 * --net=/run/netns/<node> node rtnl-child.js`) and keeps it while endpoints
 * are being wired. A socket it opens speaks for the node's namespace.
 *
 *   stdin  -> {"id": n, "ops": [LinkOp, ...]}          (endpoint-state.ts)
 *   stdout <- {"id": n, "ok": true} | {"id": n, "ok": false, "error": "<ip command>: <errno>"}
 *
 * Requests are handled one at a time, in order; it exits when its stdin
 * closes (the agent went away or stopped wiring).
 */
import { createInterface } from "node:readline";
import type { LinkOp } from "./endpoint-state.js";
import { applyLinkOps } from "./rtnl-ops.js";

const say = (v: unknown): void => void process.stdout.write(JSON.stringify(v) + "\n");

function main(): void {
  let chain = Promise.resolve();
  const rl = createInterface({ input: process.stdin });
  rl.on("close", () => void chain.then(() => process.exit(0)));
  rl.on("line", (line) => {
    let r: { id: number; ops: LinkOp[] };
    try {
      r = JSON.parse(line) as typeof r;
    } catch {
      say({ id: 0, ok: false, error: "a request line is not JSON" });
      return;
    }
    chain = chain.then(() =>
      applyLinkOps(r.ops).then(
        () => say({ id: r.id, ok: true }),
        (e: unknown) => say({ id: r.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
      ),
    );
  });
  say({ id: 0, ok: true, ready: true });
}

main();
