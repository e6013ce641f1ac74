/**
 * What the agent and the mTLS node tunnel process (main.ts) say to each other over the IPC
 * channel, and the checks of what the tunnel says (it parses bytes from the network, so the
 * agent treats its messages as untrusted: a malformed one is dropped).
 *
 *   agent --init {node SVID} / peers / source {identity, SVID}--> tunnel
 *   agent <--ready / fatal / source? {pod address} / hosts? {node, identity} / status / refused-- tunnel
 *   agent <--origin? {local port, destination, source pod, identity}-- tunnel (before it connects
 *         a carried connection to a local pod; answered by origin {id}: flows name the source pod)
 *
 * Private keys travel only agent -> tunnel, over the process's own IPC pipe, never in argv,
 * logs or status.
 */

/** The tunnel's start-up configuration (argv: nothing secret). */
export interface TunnelConfig {
  readonly trustDomain: string;
  readonly node: string;
  /** Where the kernel DNATs redirected pod connections (the node's pod gateway address). */
  readonly redirect: { readonly host: string; readonly port: number };
  /** Where peers' tunnels connect (the node's underlay address), TLS 1.3 + HTTP/2 CONNECT. */
  readonly listen: { readonly host: string; readonly port: number };
  /** This node's pod CIDRs: the only destinations a peer may ask for. */
  readonly localCidrs: readonly string[];
  /** The user the process drops root for once its sockets are bound. */
  readonly uid?: number;
  /** How long a connection to a local pod may take (a policy drop is silent). */
  readonly connectTimeoutMs: number;
}

/** An X.509-SVID and its key: chain leaf first, DER base64; PKCS#8 DER base64. */
export interface WireCreds {
  readonly chain: readonly string[];
  readonly key: string;
  /** ms since epoch: ask for a new one after this (half life). */
  readonly renewAt: number;
}

export interface TunnelPeer {
  readonly node: string;
  /** Underlay address and tunnel port. */
  readonly address: string;
  readonly port: number;
  /** The peer's CA roots (DER base64): its SVIDs validate against these only. */
  readonly roots: readonly string[];
  readonly podCidrs: readonly string[];
}

export type ToTunnel =
  | { readonly type: "init"; readonly node: WireCreds }
  | { readonly type: "node-svid"; readonly node: WireCreds }
  | { readonly type: "peers"; readonly peers: readonly TunnelPeer[] }
  | {
      readonly type: "source";
      readonly id: number;
      readonly identity?: number;
      readonly creds?: WireCreds;
      readonly error?: string;
    }
  | { readonly type: "status"; readonly id: number }
  | { readonly type: "hosts"; readonly id: number; readonly ok: boolean }
  | { readonly type: "origin"; readonly id: number };

/**
 * A connection the tunnel is about to open to a local pod for a peer: from local `port` (any
 * address) to `destination`:`destinationPort`, marked with `identity` (the certificate's), for a
 * connection the peer says `source` opened (its CONNECT's `forwarded: for=`). A claim to check.
 */
export interface TunnelOrigin {
  readonly port: number;
  readonly destination: string;
  readonly destinationPort: number;
  readonly source: string;
  readonly identity: number;
}

export interface PeerStats {
  readonly node: string;
  readonly endpoint: string;
  /** Open HTTP/2 sessions to the peer (one per source identity). */
  readonly sessions: number;
  /** Streams (carried connections) opened to it, and open now. */
  readonly streamsTotal: number;
  readonly streamsOpen: number;
  /** Connections the peer sent us, accepted and refused. */
  readonly inboundAccepted: number;
  readonly inboundRefused: number;
  readonly bytesOut: number;
  readonly bytesIn: number;
  /** ISO time of the last TLS handshake with it (either way). */
  readonly lastHandshake?: string;
  readonly lastError?: string;
}

export type FromTunnel =
  | { readonly type: "ready" }
  | { readonly type: "fatal"; readonly message: string }
  | { readonly type: "source?"; readonly id: number; readonly ip: string }
  | { readonly type: "status"; readonly id: number; readonly peers: readonly PeerStats[] }
  | { readonly type: "refused"; readonly from: string; readonly why: string }
  | { readonly type: "hosts?"; readonly id: number; readonly node: string; readonly identity: number }
  | ({ readonly type: "origin?"; readonly id: number } & TunnelOrigin);

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const str = (v: unknown, max = 2048): v is string => typeof v === "string" && v.length <= max;

/** A message from the tunnel, checked; undefined when malformed. */
export function fromTunnel(m: unknown): FromTunnel | undefined {
  if (!isObj(m)) return undefined;
  switch (m["type"]) {
    case "ready":
      return { type: "ready" };
    case "fatal":
      return str(m["message"]) ? { type: "fatal", message: m["message"] } : undefined;
    case "source?":
      return isInt(m["id"]) && str(m["ip"], 64) ? { type: "source?", id: m["id"], ip: m["ip"] } : undefined;
    case "status":
      return isInt(m["id"]) && Array.isArray(m["peers"]) && m["peers"].length <= 10_000
        ? { type: "status", id: m["id"], peers: m["peers"].filter(isObj) as unknown as PeerStats[] }
        : undefined;
    case "hosts?":
      return isInt(m["id"]) && str(m["node"], 64) && isInt(m["identity"])
        ? { type: "hosts?", id: m["id"], node: m["node"], identity: m["identity"] }
        : undefined;
    case "origin?": {
      const port = (v: unknown): v is number => isInt(v) && v >= 1 && v <= 65535;
      const ok =
        isInt(m["id"]) &&
        port(m["port"]) &&
        port(m["destinationPort"]) &&
        str(m["destination"], 64) &&
        str(m["source"], 64) &&
        isInt(m["identity"]);
      return ok
        ? {
            type: "origin?",
            id: m["id"] as number,
            port: m["port"] as number,
            destination: m["destination"] as string,
            destinationPort: m["destinationPort"] as number,
            source: m["source"] as string,
            identity: m["identity"] as number,
          }
        : undefined;
    }
    case "refused":
      return str(m["from"], 128) && str(m["why"], 1024)
        ? { type: "refused", from: m["from"], why: m["why"] }
        : undefined;
    default:
      return undefined;
  }
}
