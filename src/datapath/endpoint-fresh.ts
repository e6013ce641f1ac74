/**
 * A new endpoint namespace, its sysctls and its inside configured through
 * the native helper (netns-native.ts) when it is built, else the long-lived
 * helper shell (netns-helper.ts), with no process spawned from the agent and
 * none left waiting inside:
 *
 *   addFreshNetns(netns)   ip netns add <netns>; its sysctls (accept_dad, rp_filter: `all` and
 *                          `default`) from inside it, before it has a device
 *     ... the caller creates the veth with eth0 directly in it (rtnl.ts) ...
 *   configure(lines)       nsenter --net=<netns> ip -batch - with the lines
 *   abort()                nothing to stop (the caller deletes the namespace)
 *
 * A new device copies the namespace's `default` values, so eth0 is born with
 * accept_dad=0 and rp_filter=0 and needs no write of its own.
 */
import { existsSync } from "node:fs";
import type { LinkOp } from "./endpoint-state.js";
import { addNetns, batchIn } from "./netns-helper.js";
import { nativeAddNetns, nativeApply, nativeNetns } from "./netns-native.js";
import { netnsPath } from "./rtnl.js";

/** A change inside the namespace, both ways: rtnetlink ops (native helper) and `ip -batch` lines (shell). */
export interface FreshPlan {
  readonly ops: readonly LinkOp[];
  readonly lines: readonly string[];
}

export interface FreshNetns {
  /** Applies the plan inside the namespace; a refusal names the namespace and the error. */
  configure(plan: FreshPlan): Promise<void>;
  /** Stops what waits for the namespace (nothing, made by the helper); the caller deletes it. */
  abort(): void;
  /** Can it still be used (a pooled namespace that cannot is not handed out)? */
  alive(): boolean;
}

/** Creates namespace `netns` with its sysctls set; `what` names the endpoint for errors. */
export async function addFreshNetns(netns: string, what: string): Promise<FreshNetns> {
  // The native helper when built (netns-native.ts: no process per step), else the helper shell.
  const native = nativeNetns();
  await (native ? nativeAddNetns(netns, what) : addNetns(netns, what));
  return {
    configure: (plan) =>
      native
        ? nativeApply(netns, plan.ops, `configure eth0 of ${what}`)
        : batchIn(netns, plan.lines, `configure eth0 of ${what}`),
    abort: () => undefined,
    alive: () => existsSync(netnsPath(netns)), // not deleted from outside meanwhile
  };
}
