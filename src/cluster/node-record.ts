/**
 * Reading other nodes' registry records (`cluster/nodes/<node>`, keys.ts)
 * as untrusted input: a record that does not parse, or whose name is not
 * its key's, is refused with the reason (callers log it and skip the node).
 */
import { parseAddr, parsePrefix, prefixString, type Prefix } from "../labels/cidr.js";
import { CLUSTER_KEYS, type NodeRecordV1 } from "./keys.js";
import { isMembraneError } from "../errors.js";
import { nodeLabelSet } from "../labels/node.js";
import type { MirrorEntry } from "./mirror.js";
import { isWgKey } from "../encryption/keys.js";
import { isIpsecPublicKey } from "../encryption/ipsec/node-key.js";

export interface PeerRecord {
  readonly record: NodeRecordV1;
  /** Its pod CIDRs, parsed (canonical). */
  readonly podCidrs: readonly Prefix[];
  readonly createRevision: number;
}

/** The record under `key`, or the reason it cannot be used. */
export function parseNodeRecord(key: string, e: MirrorEntry): PeerRecord | string {
  const name = key.slice(CLUSTER_KEYS.nodes.length);
  let r: NodeRecordV1;
  try {
    r = JSON.parse(e.value) as NodeRecordV1;
  } catch {
    return `${key}: not JSON`;
  }
  if (typeof r !== "object" || r === null || r.v !== 1) return `${key}: not a NodeRecordV1`;
  if (r.name !== name) return `${key}: names node ${JSON.stringify(r.name)}, not ${name}`;
  const a = (r.addresses ?? {}) as { ipv4?: unknown; ipv6?: unknown };
  if (a.ipv4 !== undefined && (typeof a.ipv4 !== "string" || parseAddr(a.ipv4)?.family !== 4))
    return `${key}: addresses.ipv4 is not an IPv4 address`;
  if (a.ipv6 !== undefined && (typeof a.ipv6 !== "string" || parseAddr(a.ipv6)?.family !== 6))
    return `${key}: addresses.ipv6 is not an IPv6 address`;
  if (!Array.isArray(r.podCidrs) || r.podCidrs.length > 16) return `${key}: podCidrs is not a list`;
  const podCidrs: Prefix[] = [];
  for (const [i, c] of r.podCidrs.entries()) {
    const p = typeof c === "string" ? parsePrefix(c) : undefined;
    if (!p) return `${key}: podCidrs[${i}] is not a prefix`;
    podCidrs.push(p);
  }
  if (r.routing !== "native" && r.routing !== "vxlan") return `${key}: routing is not native or vxlan`;
  const bad = badLabels(r.labels);
  if (bad !== undefined) return `${key}: labels ${bad}`;
  const enc = badEncryption(r.encryption);
  if (enc !== undefined) return `${key}: encryption${enc}`;
  const auth = badAuth(r.auth);
  if (auth !== undefined) return `${key}: auth${auth}`;
  return { record: r, podCidrs, createRevision: e.createRevision };
}

/** Every node's usable record by name (bad ones reported through `bad`). */
export function nodeRecords(
  entries: ReadonlyMap<string, MirrorEntry>,
  bad: (why: string) => void,
): Map<string, PeerRecord> {
  const out = new Map<string, PeerRecord>();
  for (const [k, e] of entries) {
    const r = parseNodeRecord(k, e);
    if (typeof r === "string") bad(r);
    else out.set(r.record.name, r);
  }
  return out;
}

/** Node labels are what fromNodes/toNodes select a remote node by (policy/node-addresses.ts). */
function badLabels(labels: unknown): string | undefined {
  if (typeof labels !== "object" || labels === null || Array.isArray(labels)) return "is not a map";
  const entries = Object.entries(labels as Record<string, unknown>);
  if (entries.length > MAX_NODE_LABELS) return `has ${entries.length} entries (at most ${MAX_NODE_LABELS})`;
  if (entries.some(([, v]) => typeof v !== "string")) return "has a value that is not a string";
  try {
    nodeLabelSet(labels as Record<string, string>);
  } catch (e) {
    return isMembraneError(e) ? e.message : String(e);
  }
  return undefined;
}

const MAX_NODE_LABELS = 64;

/** The optional `encryption` of a record: a WireGuard or IPsec public key, or the mTLS tunnel's roots, and a port. */
function badEncryption(e: unknown): string | undefined {
  if (e === undefined) return undefined;
  if (typeof e !== "object" || e === null || Array.isArray(e)) return " is not a map";
  const r = e as Record<string, unknown>;
  if (r["type"] === "mtls-tunnel") {
    const roots = r["roots"];
    if (!Array.isArray(roots) || roots.length === 0 || roots.length > 8)
      return ".roots is not a list of 1-8 certificates";
    const bad = roots.findIndex(
      (x) => typeof x !== "string" || x.length > 8192 || !/^[A-Za-z0-9+/]+={0,2}$/.test(x),
    );
    if (bad >= 0) return `.roots[${bad}] is not a base64 DER certificate (at most 8 KiB)`;
  } else if (r["type"] === "ipsec") {
    if (!isIpsecPublicKey(r["publicKey"]))
      return ".publicKey is not a base64 SubjectPublicKeyInfo of an EC P-256 key";
  } else if (r["type"] !== "wireguard") return ".type is not wireguard, ipsec or mtls-tunnel";
  else if (!isWgKey(r["publicKey"])) return ".publicKey is not a base64 32-byte key";
  const port = r["port"];
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
    return ".port is not a port (1-65535)";
  if (r["keyCreatedAt"] !== undefined && typeof r["keyCreatedAt"] !== "string")
    return ".keyCreatedAt is not a string";
  const next = r["nextPublicKey"];
  if (next !== undefined && r["type"] === "ipsec" && !isIpsecPublicKey(next))
    return ".nextPublicKey is not a base64 SubjectPublicKeyInfo of an EC P-256 key";
  if (next !== undefined && r["type"] !== "ipsec" && !isWgKey(next))
    return ".nextPublicKey is not a base64 32-byte key";
  if (r["nodeToNode"] !== undefined && typeof r["nodeToNode"] !== "boolean")
    return ".nodeToNode is not a boolean";
  return undefined;
}

/** The optional `auth` of a record: the handshake port, trust domain and CA roots (base64 DER). */
function badAuth(a: unknown): string | undefined {
  if (a === undefined) return undefined;
  if (typeof a !== "object" || a === null || Array.isArray(a)) return " is not a map";
  const r = a as Record<string, unknown>;
  const port = r["port"];
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
    return ".port is not a port (1-65535)";
  if (typeof r["trustDomain"] !== "string" || !/^[a-z0-9._-]{1,255}$/.test(r["trustDomain"]))
    return ".trustDomain is not a trust domain";
  const roots = r["roots"];
  if (!Array.isArray(roots) || roots.length === 0 || roots.length > 8) return ".roots is not a list of 1-8 certificates"; // prettier-ignore
  for (const [i, c] of roots.entries())
    if (typeof c !== "string" || c.length > 16384 || !/^[A-Za-z0-9+/]+={0,2}$/.test(c))
      return `.roots[${i}] is not base64 of at most 12 KiB`;
  return undefined;
}

export const cidrText = (p: Prefix): string => prefixString(p);
