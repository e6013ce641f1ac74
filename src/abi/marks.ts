/**
 * What the kernel ruleset (datapath/) and the processes beside it (the proxy,
 * the flow observer) agree on: connection mark bits and the identity bits of
 * the packet mark. One small module, so that the proxy and observe/ need not
 * import the datapath.
 *
 *   datapath/compile.ts --sets--> ct mark / meta mark <--reads-- proxy/, observe/
 */

/** Connection mark bits (ct mark) of a connection redirected to the proxy. */
export const CT_REDIRECT_L7 = 0x80000000;
export const CT_REDIRECT_DNS = 0x40000000;
/** Connection mark bit of a connection the node itself opened (the proxy names its client `host`). */
export const CT_FROM_HOST = 0x20000000;
/**
 * Connection mark bit of the proxy's own upstream connections (its group), so that the
 * reset of connections bypassing a new redirect (bypass.ts) can tell them apart.
 */
export const CT_PROXY_UPSTREAM = 0x10000000;
/**
 * Connection mark bit of a connection to a service address (ClusterIP, LoadBalancer, NodePort),
 * set by the LB table before the policy hook: the policy judges it after the DNAT, on the backend
 * (datapath/lb-compile.ts, compile-lb-policy.ts).
 */
export const CT_SERVICE = 0x08000000;
/**
 * Connection mark bit of a connection to a NodePort (set with CT_SERVICE): when its backend is
 * not one of this node's pods, the LB table masquerades it to the node's address, so that the
 * reply comes back through this node (as kube-proxy with externalTrafficPolicy Cluster).
 */
export const CT_NODEPORT = 0x02000000; // not 0x04000000: that is CT_AUTH_NEEDED's (kept by CT_KEEP_ON_AUTH)

/** The identity of addresses no ipcache prefix covers. */
export const WORLD_IDENTITY = 2;
/** Identities use the low 25 bits of the packet mark; the high 7 bits stay free (proxy marks). */
export const IDENTITY_MASK = 0x01ffffff;
/*
 * The mTLS node tunnel (encryption/mtls/broker.ts) opens its connections to local pods with
 * SO_MARK = the source identity a peer's certificate proved: IDENTITY_MASK bits only (the broker
 * refuses any other value), never WG_FWMARK's or PKT_AUTH_OK's bit; datapath/compile-tunnel.ts
 * judges them by that identity. The modes are exclusive, so WG_FWMARK never meets it.
 */

/**
 * Mutual authentication (src/auth/, datapath/compile-auth.ts). A new connection allowed by a
 * rule that requires authentication gets CT_AUTH_NEEDED and, in the ct mark's identity bits,
 * the identity of its destination (the packet mark then holds its source's). The auth table
 * clears the bit when the pair is authenticated; otherwise the first packet is queued to the
 * agent, whose verdict sets PKT_AUTH_OK on the packet after a successful handshake. The gate
 * drops a new connection still marked CT_AUTH_NEEDED whose packet lacks PKT_AUTH_OK.
 * (CT_AUTH_NEEDED once shared 0x08000000 with CT_SERVICE: with a Service and --spiffe, every
 * service connection looked like one waiting for authentication.)
 */
export const CT_AUTH_NEEDED = 0x04000000;
/** The ct mark bits an auth verdict or the auth table keeps (every flag but CT_AUTH_NEEDED; no identity). */
export const CT_KEEP_ON_AUTH = 0xfa000000;
/** Packet mark bit set by the agent's queue verdict after a successful handshake. */
export const PKT_AUTH_OK = 0x04000000;
/** The NFQUEUE number of first packets waiting for a handshake. */
export const AUTH_QUEUE_NUM = 7189;

/**
 * Packet mark bit of WireGuard's own UDP (`wg set <if> fwmark`) under node-to-node encryption:
 * those packets skip the routing table that sends peers' node addresses into the tunnel
 * (encryption/node-routes.ts). Outside IDENTITY_MASK and the auth bit, so the policy table's
 * marks never carry it.
 */
export const WG_FWMARK = 0x02000000;
