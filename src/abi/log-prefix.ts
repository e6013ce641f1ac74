/**
 * The NFLOG prefixes the datapath's rules log with, and their reading by the
 * flow observer: the contract between datapath/compile.ts and observe/.
 *
 * NFLOG prefix of every drop: `mbr:d:e<id>:<dir>:<reason>`
 *   dir    = in (ingress to the endpoint) | out (egress from it)
 *   reason = r<ruleId> (policy deny, rule id indexes DatapathState.rules; r0 = no rule)
 *          | def (default deny: enforced and no segment matched)
 *          | spoof (source address is not the endpoint's)
 *          | inv (conntrack state invalid, e.g. an echo-reply without request)
 *   e.g. "mbr:d:e12:in:r7". parseLogPrefix() reads it back.
 * NFLOG prefix of an allowed new connection (policy verdict): `mbr:a:e<id>:<dir>:r<ruleId>`.
 * NFLOG prefix of a connection redirected to the proxy: `mbr:p:e<id>:<dir>:r<ruleId>`.
 * NFLOG prefix of an audit-mode would-be drop (let through): `mbr:u:e<id>:<dir>:<r<ruleId>|def>`.
 */

export type Direction = "in" | "out";
export type DropReason = { kind: "rule"; ruleId: number } | { kind: "default" | "spoof" | "invalid" };
/**
 * Why a packet was logged: a drop, (kind "allow") a new connection a rule allowed, or
 * (kind "redirect") one a rule handed to the proxy.
 */
export type LogReason = DropReason | { kind: "allow" | "redirect"; ruleId: number };

export function logPrefix(endpointId: number, dir: Direction, reason: LogReason): string {
  if (reason.kind === "allow") return `mbr:a:e${endpointId}:${dir}:r${reason.ruleId}`;
  if (reason.kind === "redirect") return `mbr:p:e${endpointId}:${dir}:r${reason.ruleId}`;
  const r =
    reason.kind === "rule"
      ? `r${reason.ruleId}`
      : { default: "def", spoof: "spoof", invalid: "inv" }[reason.kind];
  return `mbr:d:e${endpointId}:${dir}:${r}`;
}

/** An audit-mode would-be drop: the drop prefix with `u` for `d`; the packet goes on. */
export function auditPrefix(endpointId: number, dir: Direction, reason: `r${number}` | "def"): string {
  return `mbr:u:e${endpointId}:${dir}:${reason}`;
}

/**
 * Reads a log prefix back; undefined when the text is not one of ours.
 * `allowed` is true for a policy-verdict of an allowed new connection
 * (`mbr:a:...`, and `mbr:p:...` with `redirected`: handed to the proxy);
 * otherwise the packet was dropped for `reason`.
 */
export function parseLogPrefix(text: string):
  | {
      endpointId: number;
      direction: Direction;
      reason: DropReason;
      allowed: boolean;
      redirected?: true;
    }
  | undefined {
  const clean = text.replace(/\0.*$/s, "").trim();
  const a = /^mbr:([ap]):e(\d+):(in|out):r(\d+)$/.exec(clean);
  if (a) {
    return {
      endpointId: Number(a[2]),
      direction: a[3] as Direction,
      reason: { kind: "rule", ruleId: Number(a[4]) },
      allowed: true,
      ...(a[1] === "p" ? { redirected: true as const } : {}),
    };
  }
  const m = /^mbr:d:e(\d+):(in|out):(?:r(\d+)|(def|spoof|inv))$/.exec(clean);
  if (!m) return undefined;
  const kinds = { def: "default", spoof: "spoof", inv: "invalid" } as const;
  const reason: DropReason =
    m[3] !== undefined ? { kind: "rule", ruleId: Number(m[3]) } : { kind: kinds[m[4] as keyof typeof kinds] };
  return { endpointId: Number(m[1]), direction: m[2] as Direction, reason, allowed: false };
}
