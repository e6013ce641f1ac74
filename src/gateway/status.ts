/**
 * Status as the Gateway API names it: conditions {type, status, reason,
 * message, observedGeneration, lastTransitionTime} on GatewayClasses,
 * Gateways (and each listener), and on each HTTPRoute per parent.
 */
import type { ParentRef } from "./model.js";

export interface Condition {
  readonly type: string;
  readonly status: "True" | "False";
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration: number;
  readonly lastTransitionTime: string;
}

export interface ListenerStatus {
  readonly name: string;
  readonly supportedKinds: readonly { readonly group: string; readonly kind: string }[];
  readonly attachedRoutes: number;
  readonly conditions: readonly Condition[];
}

export interface GatewayStatus {
  readonly addresses: readonly { readonly type: "IPAddress"; readonly value: string }[];
  readonly conditions: readonly Condition[];
  readonly listeners: readonly ListenerStatus[];
}

export interface RouteParentStatus {
  readonly parentRef: ParentRef;
  readonly controllerName: string;
  readonly conditions: readonly Condition[];
}

export interface StatusSet {
  /** Keyed by resourceKey (model.ts): `Gateway/ns/name`, `HTTPRoute/ns/name`, ... */
  readonly gatewayClasses: Map<string, { readonly conditions: readonly Condition[] }>;
  readonly gateways: Map<string, GatewayStatus>;
  readonly routes: Map<string, { readonly parents: readonly RouteParentStatus[] }>;
  readonly ingresses: Map<
    string,
    { readonly loadBalancer: { readonly ingress: readonly { readonly ip: string }[] } }
  >;
}

/** Builds conditions of one object (its generation, one timestamp). */
export function conditionMaker(generation: number, now: string) {
  return (type: string, ok: boolean, reason: string, message: string): Condition => ({
    type,
    status: ok ? "True" : "False",
    reason,
    message,
    observedGeneration: generation,
    lastTransitionTime: now,
  });
}

export function conditionOf(cs: readonly Condition[], type: string): Condition | undefined {
  return cs.find((c) => c.type === type);
}
