/**
 * The gate of mutual authentication in the node's table: a new connection that a rule allows
 * only with authentication (policy-groups.ts: its auth verdict chain sets CT_AUTH_NEEDED) and
 * whose first packet did not come back from the agent's handshake with PKT_AUTH_OK is dropped,
 * logged as AUTH_REQUIRED (189).
 *
 *   prerouting (-150) pre_c: group verdict "auth" -> ct mark = NEEDED | destination identity
 *   forward/input (-5)  auth table (src/auth/kernel.ts): pair in @pairs -> NEEDED cleared
 *   forward/input (0)   iptables filter: NEEDED and new -> NFQUEUE (no bypass: no agent, no pass)
 *   forward/input (10)  here: NEEDED, new, no PKT_AUTH_OK on the packet -> log 189, drop
 *
 * The gate lives in the node's own table, compiled with the policy, so that the door stays shut
 * whatever happened to the auth table or the queue rule (deleted, never installed): a marked
 * connection then always drops. Present whenever the datapath compiles auth segments.
 */
import { logPrefix } from "../abi/log-prefix.js";
import { CT_AUTH_NEEDED, PKT_AUTH_OK } from "../abi/marks.js";
import { hex } from "./policy-groups.js";
import type { NftChain } from "./model.js";

export const AUTH_GATE_PRIORITY = 10;

export function authGateChains(logGroup: number): NftChain[] {
  const rule =
    `ct state new ct mark & ${hex(CT_AUTH_NEEDED)} != 0 meta mark & ${hex(PKT_AUTH_OK)} == 0 ` +
    `log group ${logGroup} prefix "${logPrefix({ group: 0 }, "in", { kind: "auth" })}" drop`;
  return [
    { name: "auth_gate_fwd", base: `type filter hook forward priority ${AUTH_GATE_PRIORITY}; policy accept;`, rules: [rule] }, // prettier-ignore
    { name: "auth_gate_in", base: `type filter hook input priority ${AUTH_GATE_PRIORITY}; policy accept;`, rules: [rule] }, // prettier-ignore
  ];
}
