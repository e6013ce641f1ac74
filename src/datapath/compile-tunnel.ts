/**
 * The mTLS node tunnel's rules in out_c (`--encryption mtls-tunnel`, src/encryption/mtls/).
 *
 *   tunnel group's socket, mark = source identity (SO_MARK, 1..IDENTITY_MASK, set by its broker
 *   from the peer's client certificate) --oifname vmap @ingress_ep--> the endpoint's ingress,
 *   judged with that identity; then accept: never judged a second time as `host`.
 *
 * A socket of the group without a mark (its TLS connections to peers) goes on as any host socket.
 */
import { invalid } from "./compile-error.js";
import { hex } from "./policy-groups.js";
import { IDENTITY_MASK } from "./types.js";

export function tunnelRules(gid: number | undefined): string[] {
  if (gid === undefined) return [];
  if (!Number.isInteger(gid) || gid < 1 || gid > 0xfffffffe) throw invalid("tunnelGid", `bad group ${gid}`);
  const own = `meta skgid ${gid} meta mark & ${hex(IDENTITY_MASK)} != 0`;
  return [`${own} oifname vmap @ingress_ep`, `${own} accept`];
}
