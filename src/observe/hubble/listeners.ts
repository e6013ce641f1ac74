/**
 * Where an Observer API server listens (the agent's, observe/hubble/server.ts,
 * and the relay's, relay/server.ts): a unix socket (a socket left by an earlier
 * run is replaced, anything else at the path refused; mode 0660) and/or TCP,
 * always with TLS (client certificates required when a client CA is given).
 * A listener that cannot be made shuts the server down and throws `fail`'s
 * error (the caller's code and words); closeListeners() shuts it down and
 * removes its socket files.
 */
import { chmodSync, lstatSync, readFileSync, unlinkSync } from "node:fs";
import { ServerCredentials, type Server } from "@grpc/grpc-js";
import { MembraneError } from "../../errors.js";

export interface HubbleTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** Client certificates required, signed by this CA (mutual TLS). */
  readonly clientCaFile?: string;
}

export interface ListenParams {
  readonly socketPath?: string;
  /** host:port for TCP, always with TLS. */
  readonly listen?: { readonly address: string; readonly tls: HubbleTls };
}

type Fail = (what: string, why: string, cause?: unknown) => MembraneError;

function bind(server: Server, target: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(target, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/** Makes the listeners of `p`; returns what is bound (`unix:PATH`, `HOST:PORT`). */
export async function bindListeners(server: Server, p: ListenParams, fail: Fail): Promise<string[]> {
  const bound: string[] = [];
  const { socketPath, listen } = p;
  try {
    if (socketPath !== undefined) {
      try {
        const st = lstatSync(socketPath, { throwIfNoEntry: false });
        if (st?.isSocket() === true) unlinkSync(socketPath);
        else if (st !== undefined) throw fail(socketPath, "the path exists and is not a socket");
        await bind(server, `unix:${socketPath}`, ServerCredentials.createInsecure());
        chmodSync(socketPath, 0o660);
      } catch (e) {
        throw e instanceof MembraneError ? e : fail(socketPath, (e as Error).message, e);
      }
      bound.push(`unix:${socketPath}`);
    }
    if (listen !== undefined) {
      let creds: ServerCredentials;
      try {
        const ca = listen.tls.clientCaFile === undefined ? null : readFileSync(listen.tls.clientCaFile);
        const pair = {
          cert_chain: readFileSync(listen.tls.certFile),
          private_key: readFileSync(listen.tls.keyFile),
        };
        creds = ServerCredentials.createSsl(ca, [pair], ca !== null);
      } catch (e) {
        throw fail(listen.address, `the TLS files cannot be read (${(e as Error).message})`, e);
      }
      const port = await bind(server, listen.address, creds).catch((e: Error) => {
        throw fail(listen.address, e.message, e);
      });
      bound.push(`${listen.address.slice(0, listen.address.lastIndexOf(":"))}:${port}`);
    }
    return bound;
  } catch (e) {
    closeListeners(server, bound);
    throw e;
  }
}

/** Shuts the server down (open streams closed, not awaited) and removes its socket files. */
export function closeListeners(server: Server, bound: readonly string[]): void {
  server.forceShutdown();
  for (const a of bound)
    if (a.startsWith("unix:")) {
      try {
        unlinkSync(a.slice(5));
      } catch {
        // already gone
      }
    }
}
