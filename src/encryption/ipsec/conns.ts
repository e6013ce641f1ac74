/**
 * IPsec connections from the node registry (pure): one IKEv2 connection per live peer that
 * publishes an IPsec key, one CHILD_SA per pair of nodes whose traffic selectors are the two
 * nodes' pod CIDRs, authenticated by the keys the two node records pin.
 *
 *   NodeSnapshot --desiredIpsecPeers--> IpsecPeer[] --connMessage--> VICI load-conn {<name>: {...}}
 *
 * The node whose name sorts first initiates (the other only answers, and initiates itself only
 * when no SA came for a while: ipsec.ts), so two nodes do not race to make duplicate SAs. Traffic
 * selectors are CIDRs the registry says the peer owns: a peer cannot get an SA (and so cannot
 * send through the tunnel) for addresses outside them, which closes native routing's underlay
 * spoofing gap as WireGuard's allowed IPs do.
 *
 * A peer rotating its key (rekey-auth.ts) publishes its next key beside the current one: the
 * connection pins both (strongSwan accepts a peer that signs with any one of `pubkeys`), so the
 * peer's new IKE SA under the next key is accepted while the old SAs live on.
 *
 * Children start with `start_action: none`: strongSwan closes the SAs of a connection it replaces
 * when the old one had a start action, and connections are replaced whenever a pinned key
 * changes. The agent initiates what is down itself (ipsec.ts), so nothing needs the start action.
 */
import { containsPrefix, parseAddr, prefixString } from "../../labels/cidr.js";
import type { NodeSnapshot } from "../../cluster/node-view.js";
import { publicPem } from "./node-key.js";
import type { ViciMessage } from "./vici-wire.js";
import type { SaStatus } from "../status.js";

export const CHILD = "pods";
export const IKE_PROPOSALS = ["aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha256-ecp256"];
export const ESP_PROPOSALS = ["aes256gcm16"];

export interface IpsecPeer {
  readonly node: string;
  readonly ip: string;
  readonly port: number;
  /** base64 SPKI of the peer's key (from its record). */
  readonly publicKey: string;
  /** During the peer's key rotation: its announced next key (pinned beside publicKey). */
  readonly nextPublicKey?: string;
  readonly keyCreatedAt?: string;
  /** The peer's pod CIDRs (its traffic selectors). */
  readonly remoteCidrs: readonly string[];
  readonly initiator: boolean;
}

export interface IpsecLocal {
  readonly node: string;
  readonly ip: string;
  readonly publicKey: string;
  readonly cidrs: readonly string[];
  /** CHILD_SA rekey time, seconds. */
  readonly rekeySeconds: number;
  /** Dead peer detection interval, seconds. */
  readonly dpdSeconds: number;
}

export const connName = (node: string): string => `membrane-${node}`;

export function desiredIpsecPeers(s: NodeSnapshot, self: string, family: 4 | 6 = 4): IpsecPeer[] {
  const mine = s.owned.get(self) ?? [];
  const out: IpsecPeer[] = [];
  const seen = new Set<string>();
  for (const [name, r] of [...s.records].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const e = r.record.encryption;
    if (name === self || e?.type !== "ipsec") continue;
    const ip = family === 6 ? r.record.addresses.ipv6 : r.record.addresses.ipv4;
    if (ip === undefined || parseAddr(ip)?.family !== family) continue;
    if (seen.has(e.publicKey)) continue; // two nodes with one key: the first by name keeps it
    seen.add(e.publicKey);
    const cidrs = (s.owned.get(name) ?? []).filter(
      (c) => !mine.some((m) => containsPrefix(m, c) || containsPrefix(c, m)),
    );
    if (cidrs.length === 0) continue;
    out.push({
      node: name,
      ip,
      port: e.port,
      publicKey: e.publicKey,
      ...(e.nextPublicKey !== undefined && e.nextPublicKey !== e.publicKey && !seen.has(e.nextPublicKey)
        ? { nextPublicKey: e.nextPublicKey }
        : {}),
      ...(e.keyCreatedAt ? { keyCreatedAt: e.keyCreatedAt } : {}),
      remoteCidrs: cidrs.map(prefixString).sort(),
      initiator: self < name,
    });
  }
  return out;
}

/** The VICI `load-conn` message of one peer. */
export function connMessage(l: IpsecLocal, p: IpsecPeer): ViciMessage {
  return {
    [connName(p.node)]: {
      version: "2",
      local_addrs: [l.ip],
      remote_addrs: [p.ip],
      remote_port: String(p.port),
      proposals: IKE_PROPOSALS,
      encap: "yes", // kernel-libipsec carries ESP in UDP only
      mobike: "no",
      dpd_delay: `${l.dpdSeconds}s`,
      rekey_time: `${l.rekeySeconds * 4}s`,
      local: { auth: "pubkey", id: l.node, pubkeys: [publicPem(l.publicKey)] },
      remote: {
        auth: "pubkey",
        id: p.node,
        pubkeys: [p.publicKey, ...(p.nextPublicKey !== undefined ? [p.nextPublicKey] : [])].map(publicPem),
      },
      children: {
        [CHILD]: {
          mode: "tunnel",
          local_ts: [...l.cidrs],
          remote_ts: [...p.remoteCidrs],
          esp_proposals: ESP_PROPOSALS,
          rekey_time: `${l.rekeySeconds}s`,
          start_action: "none", // see the top: ipsec.ts initiates
          dpd_action: p.initiator ? "restart" : "clear",
          close_action: "none",
        },
      },
    },
  };
}

/** One CHILD_SA as list-sas shows it: what status shows (SaStatus), and its traffic selectors. */
export interface ChildSaState extends SaStatus {
  readonly localTs: readonly string[];
  readonly remoteTs: readonly string[];
}

export interface IkeSaState {
  readonly conn: string;
  /** charon's unique id of the IKE SA (what `terminate` takes as ike-id). */
  readonly uniqueId?: string;
  readonly state: string;
  readonly remoteHost?: string;
  readonly initiator: boolean;
  readonly establishedSeconds?: number;
  readonly children: readonly ChildSaState[];
}

const num = (v: unknown): number => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : 0);

/** list-sas events ({<conn>: {...}} each) -> IKE SAs with their CHILD_SAs. */
export function parseListSas(events: readonly ViciMessage[]): IkeSaState[] {
  const out: IkeSaState[] = [];
  for (const ev of events)
    for (const [conn, v] of Object.entries(ev)) {
      if (typeof v === "string" || Array.isArray(v)) continue;
      const ike = v as ViciMessage;
      const children: ChildSaState[] = [];
      const cs = ike["child-sas"];
      if (cs && typeof cs !== "string" && !Array.isArray(cs))
        for (const c of Object.values(cs as ViciMessage)) {
          if (typeof c === "string" || Array.isArray(c)) continue;
          const m = c as ViciMessage;
          const s = (k: string): string => (typeof m[k] === "string" ? (m[k] as string) : "");
          const l = (k: string): string[] => (Array.isArray(m[k]) ? [...(m[k] as string[])] : []);
          children.push({
            state: s("state"),
            spiIn: s("spi-in"),
            spiOut: s("spi-out"),
            encryption: [s("encr-alg"), s("encr-keysize")].filter((x) => x !== "").join("-"),
            bytesIn: num(m["bytes-in"]),
            bytesOut: num(m["bytes-out"]),
            installedSeconds: num(m["install-time"]),
            ...(typeof m["rekey-time"] === "string" ? { rekeyInSeconds: num(m["rekey-time"]) } : {}),
            localTs: l("local-ts"),
            remoteTs: l("remote-ts"),
          });
        }
      out.push({
        conn,
        ...(typeof ike["uniqueid"] === "string" ? { uniqueId: ike["uniqueid"] } : {}),
        state: typeof ike["state"] === "string" ? ike["state"] : "",
        ...(typeof ike["remote-host"] === "string" ? { remoteHost: ike["remote-host"] } : {}),
        initiator: ike["initiator"] === "yes",
        ...(typeof ike["established"] === "string" ? { establishedSeconds: num(ike["established"]) } : {}),
        children,
      });
    }
  return out;
}

/** Whether an IKE SA of `conn` is up with an installed CHILD_SA. */
export function isUp(sas: readonly IkeSaState[], conn: string): boolean {
  return sas.some((s) => s.conn === conn && s.state === "ESTABLISHED" && s.children.some((c) => c.state === "INSTALLED")); // prettier-ignore
}
