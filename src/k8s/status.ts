/**
 * The watcher in the agent's status (`GET /v1/status`, `membrane get status`):
 *
 *   kubernetes: {state: ok | failing | starting, failing: [resources], lastError: {resource, at, message},
 *                credentials: {kubeconfig, tokenFile, reloads, lastError}}
 *
 * "failing" while any resource's last list or watch failed (an expired token
 * shows here as HTTP 401 until the credentials work again).
 */
import type { Route } from "../agent/api/router.js";
import type { CredentialsStatus } from "./credentials.js";
import type { ReflectorStats } from "./reflector.js";

export interface K8sStatus {
  readonly state: "ok" | "failing" | "starting";
  readonly failing: readonly string[];
  readonly lastError?: { readonly resource: string; readonly at: string; readonly message: string };
  readonly credentials?: CredentialsStatus;
}

export function k8sStatus(
  stats: Readonly<Record<string, ReflectorStats>>,
  credentials: CredentialsStatus | undefined,
): K8sStatus {
  const all = Object.entries(stats);
  const failing = all.filter(([, s]) => s.consecutiveFailures > 0);
  const last = all
    .filter(([, s]) => s.lastError !== undefined)
    .map(([resource, s]) => ({ resource, ...(s.lastError as { at: string; message: string }) }))
    .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0))[0];
  const state = failing.length > 0 ? "failing" : all.every(([, s]) => s.lists > 0) ? "ok" : "starting";
  return {
    state,
    failing: failing.map(([r]) => r),
    ...(last ? { lastError: last } : {}),
    ...(credentials ? { credentials } : {}),
  };
}

/** The agent's routes with `kubernetes` added to GET /v1/status while a watcher runs. */
export function withK8sStatus(routes: Route[], status: () => K8sStatus | undefined): Route[] {
  return routes.map((r) => {
    if (r.kind === "stream" || r.method !== "GET" || r.path !== "/v1/status") return r;
    const base = r.handler;
    return {
      ...r,
      handler: async (req) => {
        const s = status();
        const b = (await base(req)) as Record<string, unknown>; // a promise in cluster mode
        return s ? { ...b, kubernetes: s } : b;
      },
    };
  });
}
