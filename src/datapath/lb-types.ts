/**
 * The desired load-balancing state of a node: the contract between lb/ (which
 * turns Services and EndpointSlices into it) and the LB table (lb-compile.ts,
 * lb-table.ts). Plain data.
 *
 *   lb/desired.ts --LbState--> lb-compile.ts --elements--> lb-table.ts --> kernel
 */

/** IANA protocol numbers of the protocols a Service port may carry. */
export const LB_PROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;
export type LbProto = (typeof LB_PROTO)[keyof typeof LB_PROTO];

export interface LbBackend {
  ip: string;
  port: number;
}

/** One address . protocol . port a service answers on, and where its new connections go. */
export interface LbFrontend {
  /** A ClusterIP or LoadBalancer address (IPv4 or IPv6). Absent: a NodePort, on every local address of the node. */
  ip?: string;
  /** A NodePort's address family (absent: 4); its backends are of that family. */
  family?: 4 | 6;
  proto: LbProto;
  port: number;
  /**
   * The backends that take new connections (ready, not terminating), in slot order.
   * Empty: new connections are rejected at once (TCP reset, ICMP port unreachable).
   */
  backends: LbBackend[];
  /** sessionAffinity ClientIP: seconds a client stays on its backend after its last new connection. */
  affinitySeconds?: number;
  /** Maglev: slot -> index into backends (MAGLEV_M slots, lb/maglev.ts); absent: random. */
  slots?: number[];
  /**
   * Traffic policy Local and no backend on this node: new connections are dropped (as kube-proxy's
   * "has no local endpoints"), not rejected; `backends` is empty.
   */
  noLocal?: boolean;
  /**
   * `service.cilium.io/lb-l7: enabled` (TCP, with an address): the connection is not DNATed to a
   * backend but redirected to the node's L7 proxy, which picks a backend per HTTP/2 request.
   */
  l7?: boolean;
  /**
   * A LoadBalancer address: clients outside the cluster reach it through any node. A new connection
   * to it from anything but this node's pods is masqueraded when its backend is elsewhere (as a
   * NodePort's), so that the reply comes back through this node and its DNAT is undone.
   */
  external?: boolean;
}

export interface LbState {
  frontends: LbFrontend[];
}

/** Connection mark bit of a connection to a service address (set before the policy hook, lb-compile.ts). */
export { CT_NODEPORT, CT_SERVICE } from "../abi/marks.js";
