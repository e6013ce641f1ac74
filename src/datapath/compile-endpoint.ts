/**
 * One endpoint's own part of the table: its two chains, and its entries in the
 * shared dispatch maps. Its policy lives in the policy groups it goes to
 * (policy-groups.ts), which endpoints with the same policy share. Compiled alone
 * so that a change recompiles only the endpoints it touches (see incremental.ts).
 *
 *   e<id>_out: anti-spoof, ct established/related accept, ct invalid drop, goto g<n>_out
 *   e<id>_in:  ct established/related accept, ct invalid drop, goto g<n>_in
 *   (a direction without a group ends there: returns, the packet goes on)
 *
 * `goto`, not `jump`: a group's allow and redirect chains return, and must return
 * to the base chain (whose next rules are the other end's ingress), not here.
 * The logs of this chain (spoofed source, conntrack invalid) name the endpoint;
 * the group's (verdicts, default deny) name the group (abi/log-prefix.ts).
 */
import { logPrefix } from "../abi/log-prefix.js";
import { dispatchElements, type DispatchElements } from "./dispatch.js";
import { frozenChain, type NftChain } from "./model.js";
import { type GroupContext, type GroupRef } from "./policy-groups.js";
import type { DatapathEndpoint } from "./types.js";

export { invalid } from "./compile-error.js";
export { hex, MARK_DST_CHAIN } from "./policy-groups.js";

export type EndpointContext = GroupContext;

export interface EndpointParts {
  /** e<id>_in, e<id>_out. */
  readonly chains: NftChain[];
  /** Its elements in the dispatch maps (dispatch.ts). */
  readonly dispatch: DispatchElements;
  /** The groups its chains go to (the part is stale when one of them was renamed). */
  readonly groups: { readonly in?: GroupRef; readonly out?: GroupRef };
}

/** Compiles one endpoint's chains (already validated by compile's checks), given its groups. Pure. */
export function compileEndpoint(
  ep: DatapathEndpoint,
  ctx: Pick<EndpointContext, "group">,
  groups: EndpointParts["groups"],
): EndpointParts {
  const log = (prefix: string): string => `log group ${ctx.group} prefix "${prefix}"`;
  const chains: NftChain[] = [];
  for (const dir of ["in", "out"] as const) {
    const rules: string[] = [];
    if (dir === "out") {
      const spoof = `${log(logPrefix(ep.id, "out", { kind: "spoof" }))} drop`;
      rules.push(ep.ipv4 !== undefined ? `ip saddr != ${ep.ipv4} ${spoof}` : `meta nfproto ipv4 ${spoof}`);
      rules.push(ep.ipv6 !== undefined ? `ip6 saddr != ${ep.ipv6} ${spoof}` : `meta nfproto ipv6 ${spoof}`);
    }
    rules.push(
      "ct state established,related accept",
      `ct state invalid ${log(logPrefix(ep.id, dir, { kind: "invalid" }))} drop`,
    );
    const g = groups[dir];
    if (g) rules.push(`goto ${g.name}`);
    chains.push({ name: `e${ep.id}_${dir}`, rules });
  }
  return {
    // Frozen: their hashes (model.ts) are then computed once, whatever reads them.
    chains: chains.map(frozenChain),
    dispatch: dispatchElements(ep),
    groups,
  };
}
