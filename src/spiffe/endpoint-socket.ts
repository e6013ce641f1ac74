/**
 * The Workload API's socket of one endpoint: an abstract unix socket, `@spiffe-workload-api`,
 * made inside the endpoint's network namespace.
 *
 *   agent --fork: nsenter --net=<netns> node netns-listener.js--> listen(@spiffe-workload-api)
 *         <--------------- the listening socket, over the IPC channel ------------------'
 *
 * Why this way: abstract unix sockets belong to a network namespace. Only processes in the
 * endpoint's namespace can connect to it, whatever way they entered it (`membrane endpoint exec`,
 * `ip netns exec`, a CNI pod's runtime): no path another endpoint could open, no mount to set up,
 * and a connection's socket names its endpoint, so the caller needs no SO_PEERCRED or /proc lookup
 * (which a process could race by exec'ing). Another endpoint's namespace, the node's and the
 * host's have their own abstract names: they reach nothing. Workloads use
 * SPIFFE_ENDPOINT_SOCKET=unix-abstract:spiffe-workload-api (gRPC's name for it).
 */
import { fork } from "node:child_process";
import type { Server } from "node:net";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";

export const WORKLOAD_SOCKET_NAME = "spiffe-workload-api";
/** Connections one endpoint may hold open to its Workload API at once. */
export const MAX_CONNECTIONS = 16;
const START_TIMEOUT_MS = 15_000; // a safety net: nsenter + node start in well under a second

/** The namespace file of an endpoint's `netns` (a name under /run/netns, or a CNI runtime's path). */
export function netnsFile(netns: string): string {
  return netns.startsWith("/") ? netns : `/run/netns/${netns}`;
}

/** Listens on the Workload API's socket inside `netns`; the caller owns (and closes) the server. */
export function listenInNetns(netns: string): Promise<Server> {
  const child = fileURLToPath(new URL("./netns-listener.js", import.meta.url));
  return new Promise<Server>((resolve, reject) => {
    const fail = (why: string): void =>
      reject(
        new MembraneError("SPIFFE_WORKLOAD_API_FAILED", `Cannot serve the Workload API in ${netns}: ${why}`),
      );
    const cp = fork(child, [WORKLOAD_SOCKET_NAME], {
      execPath: "nsenter",
      execArgv: [`--net=${netnsFile(netns)}`, "--", process.execPath],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
    let err = "";
    cp.stderr?.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-400)));
    const t = setTimeout(() => {
      cp.kill("SIGKILL");
      fail("the listener did not start in time");
    }, START_TIMEOUT_MS);
    cp.on("message", (m: { ok?: boolean; error?: string }, handle: unknown) => {
      clearTimeout(t);
      if (m.ok && handle) {
        const server = handle as Server;
        server.maxConnections = MAX_CONNECTIONS;
        resolve(server);
      } else fail(m.error ?? "no socket came back");
    });
    cp.on("error", (e) => {
      clearTimeout(t);
      fail(e.message);
    });
    cp.on("exit", (code) => {
      clearTimeout(t);
      fail(`the listener exited (${code}) ${err.trim()}`); // no-op if resolved already
    });
  });
}
