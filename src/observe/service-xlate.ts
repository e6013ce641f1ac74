/**
 * The address a client dialled, for the flows of its connection to a Service: the LB table
 * logs a new connection to a frontend before its DNAT (`mbr:s:c` / `mbr:s:n`,
 * datapath/lb-compile.ts), and the policy verdicts of the same packet, logged after the DNAT,
 * see only the backend. This pairs them by the client's side of the tuple (protocol, source
 * address, source port), which the DNAT leaves alone.
 *
 *   NflogEvent "mbr:s:c" (daddr = ClusterIP) --note()--> pending[saddr][proto.sport] = frontend
 *   verdict flow (daddr = backend)           --dialled(saddr, proto, sport, t)--> frontend | undefined
 *
 * Both log calls happen in the same pass of the packet through the hooks (-160 before -90),
 * into the same NFLOG group, so the frontend event always comes first. An entry answers for
 * WINDOW_MS after its event (every verdict of that packet: the client's egress and the
 * backend's ingress), then it is stale: a later connection from the same client port to a pod
 * address directly must not be named after a service. Bounded: past MAX_PENDING entries the
 * table starts again (entries matter for a few milliseconds).
 */
import { ipv4String } from "./packet.js";

export interface DialledFrontend {
  readonly ip: string;
  readonly proto: number;
  readonly port: number;
  /** A NodePort (any node address) rather than a ClusterIP / LoadBalancer address. */
  readonly nodePort: boolean;
  readonly atMs: number;
}

const WINDOW_MS = 1000;
const MAX_PENDING = 4096;

export class ServiceTranslations {
  private readonly pending = new Map<string, Map<number, DialledFrontend>>();
  private size = 0;

  /** A frontend event: the packet before its DNAT (IPv4, TCP/UDP/SCTP). False when it is not one. */
  note(packet: Uint8Array, nodePort: boolean, atMs: number): boolean {
    if (packet.length < 20 || (packet[0] ?? 0) >> 4 !== 4) return false;
    const ihl = ((packet[0] ?? 0) & 0x0f) * 4;
    const proto = packet[9] ?? 0;
    if (ihl < 20 || packet.length < ihl + 4 || (proto !== 6 && proto !== 17 && proto !== 132)) return false;
    const sport = ((packet[ihl] ?? 0) << 8) | (packet[ihl + 1] ?? 0);
    const dport = ((packet[ihl + 2] ?? 0) << 8) | (packet[ihl + 3] ?? 0);
    const saddr = ipv4String(packet, 12);
    if (this.size >= MAX_PENDING) {
      this.pending.clear();
      this.size = 0;
    }
    let bySrc = this.pending.get(saddr);
    if (bySrc === undefined) this.pending.set(saddr, (bySrc = new Map()));
    const k = proto * 65536 + sport;
    if (!bySrc.has(k)) this.size++;
    bySrc.set(k, { ip: ipv4String(packet, 16), proto, port: dport, nodePort, atMs });
    return true;
  }

  /** The frontend the packet from (source, proto, sport) at `atMs` was dialled to, if a service's. */
  dialled(source: string, proto: number, sport: number, atMs: number): DialledFrontend | undefined {
    if (this.size === 0) return undefined;
    const f = this.pending.get(source)?.get(proto * 65536 + sport);
    return f !== undefined && atMs - f.atMs <= WINDOW_MS && atMs >= f.atMs - WINDOW_MS ? f : undefined;
  }
}
