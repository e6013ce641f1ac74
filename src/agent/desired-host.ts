/**
 * The host firewall's desired state (datapath/compile-host.ts) from the engine's
 * host policy (policy/host-policy.ts: the nodeSelector rules selecting this node),
 * for DesiredBuilder (desired.ts).
 *
 *   engine.hostPolicy() --directionOf--> CachedDirection x 2 (the same objects while their content stays)
 *     --segmentsOf(rule ids)--> HostFirewall {ingress, egress} | undefined (no host policy here)
 *
 * The host policy is computed again at every build (few rules select a node: cheap),
 * and compared by content with the last one, so an unchanged host policy neither
 * moves rule ids nor changes the table.
 *
 * Fail closed: L7 rules of host policies (Cilium allows DNS only) are not redirected
 * to the node's proxy: their segments are drops (segmentsOf without a proxy).
 */
import type { DirectionPolicy as KernelDirection, HostFirewall } from "../datapath/types.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { DirectionPolicy } from "../policy/resolve.js";
import {
  directionOf,
  optionsKey,
  segmentsOf,
  type BuildOptions,
  type CachedDirection,
} from "./desired-segments.js";

/** The user id of the host's directions in DesiredBuilder's table of directions in use. */
export const HOST_USER = -1;

interface HostDirection {
  readonly c: CachedDirection;
  readonly enforced: boolean;
  readonly audit: boolean;
  readonly key: string;
}

export class HostDirections {
  private last: readonly [HostDirection, HostDirection] | undefined;

  /** The host's directions now; `changed` when they differ from the last call's. */
  update(engine: PolicyEngine): { dirs: readonly [HostDirection, HostDirection]; changed: boolean } {
    const pol = engine.hostPolicy();
    const next = [this.direction(pol.ingress, 0), this.direction(pol.egress, 1)] as const;
    const changed = this.last === undefined || next[0] !== this.last[0] || next[1] !== this.last[1];
    this.last = next;
    return { dirs: next, changed };
  }

  /** The cached directions in use (none until the first update). */
  cached(): CachedDirection[] {
    return this.last ? [this.last[0].c, this.last[1].c] : [];
  }

  private direction(pol: DirectionPolicy, i: 0 | 1): HostDirection {
    const c = directionOf(pol);
    const audit = pol.auditDefault === true;
    const key = `${pol.enforced}|${audit}|${JSON.stringify(c.flat)}`;
    const prev = this.last?.[i];
    return prev && prev.key === key ? prev : { c, enforced: pol.enforced, audit, key };
  }
}

/** The host firewall under these rule ids; undefined when no host policy selects the node. */
export function hostFirewall(
  dirs: readonly [HostDirection, HostDirection],
  ids: ReadonlyMap<string, number>,
  opts: BuildOptions,
  tunnelPort: number | undefined,
): HostFirewall | undefined {
  // No proxy for the host's own traffic (see the top of this file).
  // Nor authentication: the host's own traffic is never authenticated (a rule requiring it drops).
  const hostOpts: BuildOptions = { authAvailable: false };
  const key = optionsKey(hostOpts);
  const kernel = (d: HostDirection): KernelDirection => ({
    enforced: d.enforced,
    ...(d.audit ? { auditDefault: true } : {}),
    segments: segmentsOf(d.c, ids, hostOpts, key),
  });
  const [ingress, egress] = [kernel(dirs[0]), kernel(dirs[1])];
  const idle = (d: KernelDirection): boolean =>
    !d.enforced && d.auditDefault !== true && d.segments.length === 0;
  if (idle(ingress) && idle(egress)) return undefined;
  return { ingress, egress, ...(tunnelPort !== undefined ? { tunnelPort } : {}) };
}
