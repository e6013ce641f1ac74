/**
 * Messages between the agent and the gateway process (main.ts), over the
 * child's IPC channel. The agent sends the resources and what the node knows;
 * the process compiles them itself (compile.ts is deterministic: the agent
 * compiles the same input for the status it shows).
 */
import type { GatewayEvent } from "./exchange.js";
import type { ServicePortInfo } from "./compile.js";
import type { GatewayResource } from "./model.js";

export interface GatewayInputs {
  readonly resources: readonly GatewayResource[];
  /** `namespace/name` -> ready endpoint addresses (a Service with none is still known). */
  readonly services: Readonly<Record<string, readonly string[]>>;
  readonly namespaceLabels: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /**
   * `namespace/name` -> Service port -> what the Service says of it: appProtocol
   * (`kubernetes.io/h2c`, `grpc`: HTTP/2 to the backend), the port its endpoints serve it on
   * (as targetPort: a named one resolved on the pods, a hand-written EndpointSlice's; absent: the Service port).
   */
  readonly servicePorts?: Readonly<Record<string, Readonly<Record<string, ServicePortInfo>>>>;
  readonly addresses: readonly string[];
  /**
   * `namespace/name` -> the addresses the agent gave that Gateway of its own (it names none in
   * spec.addresses): one per family from the LoadBalancer pool, as Cilium's LB-IPAM gives the
   * Gateway's LoadBalancer Service. Empty: the pool is full (not programmed). A Gateway not
   * listed is served on the node's gateway address (`addresses`), shared with the others.
   */
  readonly gatewayAddresses?: Readonly<Record<string, readonly string[]>>;
  /**
   * Why those addresses are empty when it is not a full pool: the cluster store refuses this node
   * the reservations (least privilege, agent/gateway-addresses.ts). Said in the Gateway's status.
   */
  readonly gatewayAddressesRefused?: string;
  /**
   * The agent's policy revision: when it changes, idle kept-alive backend
   * connections are closed, so that a tightened backend policy applies to
   * the next request (conntrack lets established connections live on).
   */
  readonly policyRevision?: number;
}

export type ToGateway = { readonly type: "config"; readonly version: number; readonly inputs: GatewayInputs };

export type FromGateway =
  | {
      readonly type: "applied";
      readonly version: number;
      readonly serving: readonly string[];
      readonly error?: string;
    }
  /** The requests served since the last message, in order (event-batch.ts); the agent checks each (from-gateway.ts). */
  | { readonly type: "events"; readonly events: readonly GatewayEvent[] };

export interface GatewayProcessConfig {
  readonly secretsDir: string;
  /** Source address of upstream connections. */
  readonly localAddress?: string;
  /** Source address of upstream IPv6 connections. */
  readonly localAddress6?: string;
}
