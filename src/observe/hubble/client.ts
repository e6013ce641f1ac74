/**
 * A client of Hubble's Observer API (ours, or Cilium's): what `membrane
 * observe --server ADDR` speaks.
 *
 *   ADDR = unix:/path | host:port   (TLS when a CA is given; a client certificate for mutual TLS)
 *   getFlows(ObserveRequest) --GetFlowsRequest--> stream of GetFlowsResponse (protojson objects, proto names)
 */
import { readFileSync } from "node:fs";
import { create, toJson, type Message } from "@bufbuild/protobuf";
import { Client, credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { MembraneError } from "../../errors.js";
import type { ObserveRequest } from "../flags.js";
import type { JsonObject } from "./json.js";
import { getFlowsRequestOf } from "./request.js";
import { hubbleSchema } from "./schema.js";
import { observerService } from "./service.js";

export interface HubbleClientTls {
  readonly caFile: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** The name the server's certificate must carry, when not the address's host. */
  readonly serverName?: string;
}

/**
 * The HTTP/2 receive window of a GetFlows reader (the relay's connections to the agents, `membrane
 * observe --server`), per stream and per connection. With HTTP/2's default 64 KiB an agent may send about 140 flows before it waits
 * for the relay's WINDOW_UPDATE: one round trip between two processes per 140 flows, which on a
 * loaded machine (each wake-up late by milliseconds) capped a node at a few thousand flows/s
 * and let its ring lap the stream. grpc-go sizes its windows by bandwidth-delay estimates up to
 * 16 MiB; a fixed 8 MiB (about 18,000 flows) covers a scheduling stall of a second at 20,000/s.
 */
export const FLOW_CONTROL_WINDOW = 8 << 20;

function callFailed(addr: string, e: unknown): MembraneError {
  const details = (e as { details?: string }).details ?? (e as Error).message;
  return new MembraneError("HUBBLE_CALL_FAILED", `Cannot read flows from ${addr}: ${details}`, {
    hint: "Check --server (unix:/path or host:port) and, for TCP, the TLS files.",
    cause: e,
  });
}

export class HubbleClient {
  private readonly client: Client;
  private readonly service = observerService();

  constructor(
    private readonly address: string,
    tls?: HubbleClientTls,
  ) {
    let creds: ChannelCredentials;
    try {
      creds =
        tls === undefined
          ? credentials.createInsecure()
          : credentials.createSsl(
              readFileSync(tls.caFile),
              tls.keyFile === undefined ? null : readFileSync(tls.keyFile),
              tls.certFile === undefined ? null : readFileSync(tls.certFile),
            );
    } catch (e) {
      throw new MembraneError(
        "CLI_USAGE",
        `Cannot read the TLS files for ${address}: ${(e as Error).message}`,
      );
    }
    this.client = new Client(address, creds, {
      "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
      ...(tls?.serverName !== undefined ? { "grpc.ssl_target_name_override": tls.serverName } : {}),
    });
  }

  private unary(name: "GetNodes" | "GetNamespaces" | "ServerStatus"): Promise<JsonObject> {
    const m = this.service[name];
    const s = hubbleSchema();
    const reqDesc = s[`${name}Request`];
    const resDesc = s[`${name}Response`];
    return new Promise((resolve, reject) =>
      this.client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        create(reqDesc),
        (err, res) =>
          err || res === undefined
            ? reject(callFailed(this.address, err))
            : resolve(toJson(resDesc, res, { useProtoFieldName: true }) as JsonObject),
      ),
    );
  }

  serverStatus(): Promise<JsonObject> {
    return this.unary("ServerStatus");
  }

  getNodes(): Promise<JsonObject> {
    return this.unary("GetNodes");
  }

  getNamespaces(): Promise<JsonObject> {
    return this.unary("GetNamespaces");
  }

  /** Streams GetFlows responses (protojson, proto field names) to `onRecord`; resolves at the end of the stream. */
  getFlows(req: ObserveRequest, onRecord: (r: JsonObject) => void, signal?: AbortSignal): Promise<void> {
    const m = this.service.GetFlows;
    const d = hubbleSchema().GetFlowsResponse;
    const call = this.client.makeServerStreamRequest(
      m.path,
      m.requestSerialize,
      m.responseDeserialize,
      getFlowsRequestOf(req),
    );
    signal?.addEventListener("abort", () => call.cancel(), { once: true });
    return new Promise((resolve, reject) => {
      call.on("data", (res: Message) => onRecord(toJson(d, res, { useProtoFieldName: true }) as JsonObject));
      call.on("end", () => resolve());
      call.on("error", (e: Error) => (signal?.aborted ? resolve() : reject(callFailed(this.address, e))));
    });
  }

  close(): void {
    this.client.close();
  }
}
