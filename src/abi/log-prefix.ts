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
 *          | enc (strict encryption: traffic to another node's pods would leave unencrypted;
 *            host only, `mbr:d:h0:out:enc`, encryption/strict.ts)
 *   e.g. "mbr:d:e12:in:r7". parseLogPrefix() reads it back.
 * NFLOG prefix of an allowed new connection (policy verdict): `mbr:a:e<id>:<dir>:r<ruleId>`.
 * NFLOG prefix of a connection redirected to the proxy: `mbr:p:e<id>:<dir>:r<ruleId>`.
 * NFLOG prefix of an audit-mode would-be drop (let through): `mbr:u:e<id>:<dir>:<r<ruleId>|def>`.
 * NFLOG prefix of a new connection a rule allows only with mutual authentication:
 * `mbr:t:g<n>:<dir>:r<ruleId>` (the pair is then authenticated or the first packet is held);
 * its drop when no authentication came: `mbr:d:g0:in:auth` (Hubble's AUTH_REQUIRED, 189),
 * logged by the gate (datapath/compile-auth.ts), which names no group: the endpoint is the
 * packet's destination.
 *
 * Policy verdicts (allow, redirect, rule deny, audit, default) are logged in chains that
 * endpoints with the same policy share (datapath/policy-groups.ts): those carry the
 * group, `g<n>` (n: the group's number), instead of `e<id>`, e.g. "mbr:a:g5:in:r3".
 * The endpoint is then the packet's own address: the source on `out` (the endpoint's
 * chain checked it against the endpoint's address before jumping to the group), the
 * destination on `in` (the ingress dispatch is by destination address or by the
 * endpoint's interface). parseLogPrefix() gives `group` and no `endpointId` for them.
 * Spoofed sources and conntrack-invalid drops are logged in the endpoint's own chain
 * and keep `e<id>`.
 *
 * The host firewall's verdicts (datapath/compile-host.ts: traffic to and from the node
 * itself) carry `h0`, e.g. "mbr:d:h0:in:def": the endpoint is the host.
 */

export type Direction = "in" | "out";
export type DropReason =
  { kind: "rule"; ruleId: number } | { kind: "default" | "spoof" | "invalid" | "unencrypted" | "auth" };
/**
 * Why a packet was logged: a drop, (kind "allow") a new connection a rule allowed, or
 * (kind "redirect") one a rule handed to the proxy.
 */
export type LogReason = DropReason | { kind: "allow" | "redirect" | "authAllow"; ruleId: number };

/** Who logs: an endpoint (its id), a policy group shared by endpoints (`{ group: n }`), or the host firewall. */
export type LogOwner = number | { readonly group: number } | "host";

const ownerText = (o: LogOwner): string =>
  o === "host" ? "h0" : typeof o === "number" ? `e${o}` : `g${o.group}`;

export function logPrefix(owner: LogOwner, dir: Direction, reason: LogReason): string {
  const who = ownerText(owner);
  if (reason.kind === "allow") return `mbr:a:${who}:${dir}:r${reason.ruleId}`;
  if (reason.kind === "redirect") return `mbr:p:${who}:${dir}:r${reason.ruleId}`;
  if (reason.kind === "authAllow") return `mbr:t:${who}:${dir}:r${reason.ruleId}`;
  const r =
    reason.kind === "rule"
      ? `r${reason.ruleId}`
      : { default: "def", spoof: "spoof", invalid: "inv", unencrypted: "enc", auth: "auth" }[reason.kind];
  return `mbr:d:${who}:${dir}:${r}`;
}

/** An audit-mode would-be drop: the drop prefix with `u` for `d`; the packet goes on. */
export function auditPrefix(owner: LogOwner, dir: Direction, reason: `r${number}` | "def"): string {
  return `mbr:u:${ownerText(owner)}:${dir}:${reason}`;
}

/** The owner part of a parsed prefix: an endpoint id, a group (the endpoint is the packet's), or the host. */
type ParsedOwner =
  | { endpointId: number; group?: undefined; host?: undefined }
  | { endpointId?: undefined; group: number; host?: undefined }
  | { endpointId?: undefined; group?: undefined; host: true };
const ownerOf = (kind: string, n: string): ParsedOwner =>
  kind === "e" ? { endpointId: Number(n) } : kind === "h" ? { host: true } : { group: Number(n) };

/**
 * Reads a log prefix back; undefined when the text is not one of ours.
 * `allowed` is true for a policy-verdict of an allowed new connection
 * (`mbr:a:...`, and `mbr:p:...` with `redirected`: handed to the proxy);
 * otherwise the packet was dropped for `reason`.
 */
export function parseLogPrefix(text: string):
  | (ParsedOwner & {
      direction: Direction;
      reason: DropReason;
      allowed: boolean;
      redirected?: true;
      /** Allowed by a rule that requires mutual authentication (`mbr:t:`). */
      authenticated?: true;
    })
  | undefined {
  const clean = text.replace(/\0.*$/s, "").trim();
  const a = /^mbr:([apt]):([egh])(\d+):(in|out):r(\d+)$/.exec(clean);
  if (a && (a[2] !== "h" || a[3] === "0")) {
    return {
      ...ownerOf(a[2] as string, a[3] as string),
      direction: a[4] as Direction,
      reason: { kind: "rule", ruleId: Number(a[5]) },
      allowed: true,
      ...(a[1] === "p" ? { redirected: true as const } : {}),
      ...(a[1] === "t" ? { authenticated: true as const } : {}),
    };
  }
  const m = /^mbr:d:([egh])(\d+):(in|out):(?:r(\d+)|(def|spoof|inv|enc|auth))$/.exec(clean);
  if (!m || (m[1] === "h" && m[2] !== "0")) return undefined;
  if (m[5] === "auth") {
    // Only the gate logs it, as group 0: the endpoint is the packet's destination.
    return m[1] === "g" && m[2] === "0" && m[3] === "in"
      ? { group: 0, direction: "in", reason: { kind: "auth" }, allowed: false }
      : undefined;
  }
  // Spoofing and invalid conntrack state are an endpoint's own checks: never a group's or the host's.
  if (m[1] !== "e" && (m[5] === "spoof" || m[5] === "inv")) return undefined;
  // Unencrypted traffic is the node's own check (strict mode), never an endpoint's.
  if (m[1] !== "h" && m[5] === "enc") return undefined;
  const kinds = { def: "default", spoof: "spoof", inv: "invalid", enc: "unencrypted", auth: "auth" } as const;
  const reason: DropReason =
    m[4] !== undefined ? { kind: "rule", ruleId: Number(m[4]) } : { kind: kinds[m[5] as keyof typeof kinds] };
  return { ...ownerOf(m[1] as string, m[2] as string), direction: m[3] as Direction, reason, allowed: false };
}

/**
 * NFLOG prefixes of the LB table (datapath/lb-compile.ts): a new connection to a service
 * frontend, logged before its DNAT so that the flow observer learns the address the client
 * dialled (Hubble's destination_service). `c`: a ClusterIP or LoadBalancer address, `n`: a
 * NodePort. Not a flow of its own: the policy verdicts of the same packet follow it.
 */
export const SERVICE_LOG_PREFIX = { frontend: "mbr:s:c", nodePort: "mbr:s:n" } as const;

/** Reads a service prefix back: "frontend", "nodePort", or undefined when it is not one. */
export function parseServicePrefix(text: string): "frontend" | "nodePort" | undefined {
  if (!text.startsWith("mbr:s:")) return undefined;
  const clean = text.replace(/\0.*$/s, "").trim();
  return clean === SERVICE_LOG_PREFIX.frontend
    ? "frontend"
    : clean === SERVICE_LOG_PREFIX.nodePort
      ? "nodePort"
      : undefined;
}
