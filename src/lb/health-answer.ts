/**
 * What a Service's health check port answers (kube-proxy's service health check): the check of
 * one Service on this node, and the HTTP status and JSON body for it. Pure.
 *
 *   {namespace, name, port, localEndpoints}, healthy --> 200 | 503,
 *     {"service":{"namespace","name"},"localEndpoints":N,"serviceProxyHealthy":bool}
 */

export interface HealthCheck {
  readonly namespace: string;
  readonly name: string;
  /** The Service's healthCheckNodePort. */
  readonly port: number;
  /** This node's ready backends of the Service. */
  readonly localEndpoints: number;
}

/** 200 when the node has a local ready backend and its services' table is in place, else 503. */
export function healthAnswer(c: HealthCheck, healthy: boolean): { status: number; body: string } {
  const body = JSON.stringify({
    service: { namespace: c.namespace, name: c.name },
    localEndpoints: c.localEndpoints,
    serviceProxyHealthy: healthy,
  });
  return { status: c.localEndpoints > 0 && healthy ? 200 : 503, body };
}

/** A message from the agent to the health check process (health-child.ts). */
export interface HealthSync {
  readonly type: "sync";
  readonly seq: number;
  readonly checks: readonly HealthCheck[];
  readonly healthy: boolean;
}

/** Its answer once every port of the sync is served (or failed). */
export interface HealthSynced {
  readonly type: "synced";
  readonly seq: number;
  /** Ports that could not be served, with why. */
  readonly failed: readonly { readonly check: HealthCheck; readonly why: string }[];
}

/** A sync message as the child must see it (it comes over IPC from the agent; checked anyway). */
export function isHealthSync(m: unknown): m is HealthSync {
  if (typeof m !== "object" || m === null) return false;
  const o = m as Record<string, unknown>;
  return (
    o["type"] === "sync" &&
    Number.isInteger(o["seq"]) &&
    typeof o["healthy"] === "boolean" &&
    Array.isArray(o["checks"]) &&
    o["checks"].every((c: unknown) => {
      const x = c as Record<string, unknown> | null;
      return (
        typeof x === "object" &&
        x !== null &&
        typeof x["namespace"] === "string" &&
        typeof x["name"] === "string" &&
        Number.isInteger(x["port"]) &&
        (x["port"] as number) >= 1 &&
        (x["port"] as number) <= 65535 &&
        Number.isInteger(x["localEndpoints"]) &&
        (x["localEndpoints"] as number) >= 0
      );
    })
  );
}
