/** What a rule element needs to know about the policy around it. */
import type { Direction, PolicyRef } from "../types.js";

export interface Scope {
  readonly policy: PolicyRef;
  /** The policy's namespace; undefined for a clusterwide policy. */
  readonly namespace: string | undefined;
  /** Mutual authentication is enabled on this node. */
  readonly meshAuth: boolean;
  /** The rule uses nodeSelector (host firewall). */
  readonly hostPolicy: boolean;
  readonly description?: string;
}

export interface ElementScope extends Scope {
  readonly dir: Direction;
  readonly deny: boolean;
}

export function notSupported(what: string): string {
  return `${what} is not supported by Membrane yet; remove it or express the rule another way`;
}
