/**
 * SPIFFE for the agent's endpoints: the identity provider (src/spiffe/provider.ts) and one
 * Workload API per endpoint, served on a socket only that endpoint reaches
 * (src/spiffe/endpoint-socket.ts).
 *
 *   endpoints (created, deleted, relabelled) --sync()--> per endpoint: socket + WorkloadApiServer
 *                                                      provider.retain(identities of endpoints)
 *
 * sync() runs when an endpoint is created (its socket exists before the create answers) and every
 * SYNC_MS (deleted endpoints' sockets closed, identity changes pushed to open streams, SVIDs of
 * identities without endpoints here forgotten). The identity a stream serves is read live on every
 * answer, so a relabelled endpoint never gets the SVID of the identity it no longer has.
 */
import type { Server, Socket } from "node:net";
import { join } from "node:path";
import type { Logger } from "pino";
import { CaFile } from "../../spiffe/ca-file.js";
import { checkTrustDomain } from "../../spiffe/id.js";
import { SvidProvider } from "../../spiffe/provider.js";
import { listenInNetns } from "../../spiffe/endpoint-socket.js";
import { WorkloadApiServer } from "../../spiffe/workload-api.js";
import type { EndpointView } from "./endpoints.js";
import type { AuthManager } from "../../auth/manager.js";
import { startAuth, type AuthAgentParams, type AuthDeps } from "./auth.js";

export interface SpiffeParams {
  readonly trustDomain: string;
  /** Life of an X.509-SVID (ms; default 1 h). */
  readonly svidTtlMs?: number;
  /** Life of a CA root (ms; default 30 days). */
  readonly rootTtlMs?: number;
  /** Serve the Workload API in every endpoint (default true). */
  readonly workloadApi?: boolean;
  /** Cluster mode: the TCP port of cross-node handshakes at the node's addresses (default 4250). */
  readonly authPort?: number;
  /** Authenticate pairs of two local endpoints at policy time, before their first packet (default true). */
  readonly prefillLocalPairs?: boolean;
  /** Also cross-node pairs, over the pooled connection to the peer's agent (default true; needs prefillLocalPairs). */
  readonly prefillRemotePairs?: boolean;
}

const SYNC_MS = 2000;

interface Served {
  readonly netns: string;
  readonly server: Server;
  readonly api: WorkloadApiServer;
  lastIdentity: number | undefined;
}

export class SpiffeController {
  private readonly served = new Map<string, Served>();
  private running: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  /** Mutual authentication in the datapath (controllers/auth.ts). */
  auth: AuthManager | undefined;

  constructor(
    readonly provider: SvidProvider,
    private readonly d: {
      readonly logger: Logger;
      readonly endpoints: () => readonly EndpointView[];
      readonly workloadApi: boolean;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sync().catch(() => undefined), SYNC_MS);
    this.timer.unref();
  }

  /** Brings the sockets and SVIDs in line with the endpoints (serialized; errors logged per endpoint). */
  sync(): Promise<void> {
    const run = (): Promise<void> => this.syncOnce();
    this.running = this.running.then(run, run);
    return this.running;
  }

  view(): Record<string, unknown> {
    return { ...this.provider.view(), workloadApiEndpoints: this.served.size };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.provider.stop();
    for (const [k, s] of this.served) this.close(k, s);
    await this.auth?.stop(); // the queue unbinds: no new pairs until an agent answers again
  }

  private async syncOnce(): Promise<void> {
    const eps = this.d.endpoints();
    const byKey = new Map(eps.map((e) => [`${e.namespace}/${e.name}`, e]));
    for (const [k, s] of this.served) {
      const e = byKey.get(k);
      if (!e || e.netns !== s.netns) this.close(k, s);
    }
    this.provider.retain(new Set(eps.map((e) => e.identity)));
    for (const [k, e] of byKey) {
      const s = this.served.get(k);
      if (s) {
        if (s.lastIdentity !== e.identity) {
          s.lastIdentity = e.identity;
          s.api.refresh();
        }
        continue;
      }
      await this.provider.ensure(e.identity).catch((err: unknown) => {
        this.d.logger.error({ endpoint: k, err: (err as Error).message }, "cannot issue the endpoint's SVID");
      });
      if (this.d.workloadApi) await this.serve(k, e);
    }
  }

  private async serve(k: string, e: EndpointView): Promise<void> {
    let server: Server;
    try {
      server = await listenInNetns(e.netns);
    } catch (err) {
      this.d.logger.error({ endpoint: k, err: (err as Error).message }, "cannot serve the Workload API");
      return;
    }
    const [namespace, name] = [e.namespace, e.name];
    const identity = (): number | undefined => {
      const now = this.d.endpoints().find((x) => x.namespace === namespace && x.name === name);
      return now && now.netns === e.netns ? now.identity : undefined;
    };
    const api = new WorkloadApiServer({
      provider: this.provider,
      identity,
      logger: this.d.logger,
      endpoint: k,
    });
    server.on("connection", (c: Socket) => api.inject(c));
    server.on("error", (err) =>
      this.d.logger.warn({ endpoint: k, err: err.message }, "Workload API socket error"),
    );
    this.served.set(k, { netns: e.netns, server, api, lastIdentity: e.identity });
  }

  private close(k: string, s: Served): void {
    this.served.delete(k);
    s.server.close();
    s.api.close();
  }
}

/** Starts the provider (CA file in `<stateDir>/spiffe/`) and the controller; undefined when SPIFFE is off. */
export async function startSpiffe(
  p: { spiffe?: SpiffeParams; stateDir?: string } & AuthAgentParams,
  endpoints: () => readonly EndpointView[],
  auth?: AuthDeps,
): Promise<SpiffeController | undefined> {
  if (!p.spiffe) return undefined;
  const provider = await SvidProvider.start({
    trustDomain: checkTrustDomain(p.spiffe.trustDomain),
    logger: p.logger,
    ...(p.stateDir !== undefined ? { file: new CaFile(join(p.stateDir, "spiffe")) } : {}),
    ...(p.spiffe.svidTtlMs !== undefined ? { svidTtlMs: p.spiffe.svidTtlMs } : {}),
    ...(p.spiffe.rootTtlMs !== undefined ? { rootTtlMs: p.spiffe.rootTtlMs } : {}),
  });
  const c = new SpiffeController(provider, { logger: p.logger, endpoints, workloadApi: p.spiffe.workloadApi ?? true }); // prettier-ignore
  await c.sync();
  c.start();
  try {
    if (auth) c.auth = await startAuth({ ...p, prefill: p.spiffe.prefillLocalPairs ?? true, prefillRemote: p.spiffe.prefillRemotePairs ?? true }, provider, endpoints, auth); // prettier-ignore
  } catch (e) {
    await c.stop(); // no half-started provider; rules requiring auth stay closed (the gate drops)
    throw e;
  }
  return c;
}
