/**
 * What the agent keeps in the store, and under which keys. Versioned records
 * (`v`) so that a newer agent can read an older state directory.
 */
export const KEYS = {
  endpoints: "endpoints/",
  policies: "policies/",
  namespaces: "namespaces/",
  identities: "identities/",
} as const;

export interface EndpointRecordV1 {
  readonly v: 1;
  readonly name: string;
  readonly namespace: string;
  readonly labels: Record<string, string>;
  /** Small integer, unique on the node. */
  readonly id: number;
  readonly netns: string;
  readonly hostIfname: string;
  readonly ipv4: string;
  readonly ipv6?: string;
  /** Named container ports (for policies with named ports). */
  readonly ports?: readonly { name: string; port: number; protocol: "TCP" | "UDP" | "SCTP" }[];
  /**
   * Attached by a CNI runtime (controllers/cni-attachments.ts): its namespace is not ours; its links
   * are the previous plugin's, or with `standalone` the agent's (controllers/cni-standalone.ts).
   */
  readonly cni?: {
    readonly containerId: string;
    readonly ifname: string;
    readonly network: string;
    readonly standalone?: true;
    /**
     * Chained after `bridge`: the bridge its veth was a port of. With `routed` the agent took
     * the veth off the bridge and routes it (datapath/cni-bridge.ts): enforced both ways.
     * Without (adopted by an older agent), its packets reach the node from the bridge, not
     * from its veth, so its egress policy is not enforced.
     */
    readonly bridge?: string;
    readonly routed?: true;
  };
}

/**
 * Before V2: a copy of the whole file a policy was applied from (with every
 * policy of that file), parsed again on restart. Still read; rewritten as V2.
 */
export interface PolicyRecordV1 {
  readonly text: string;
  readonly file: string;
}

/** One policy in its normalised form (agent/policy-store.ts encodes and decodes it). */
export interface PolicyRecordV2 {
  readonly v: 2;
  /** Where it was applied from, for messages. */
  readonly source?: { readonly file: string; readonly line: number };
  /** The PolicyResource without `source`, bigints and selectors tagged. */
  readonly policy: unknown;
}
