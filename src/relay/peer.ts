/**
 * One agent's Observer API as the relay reaches it: a gRPC channel to its
 * unix socket or TCP+TLS address, a health check (ServerStatus), and
 * GetFlows streams whose answers stay bytes (raw.ts).
 *
 *   Peer(name, target) --ServerStatus (deadline)--> status | error
 *                      --GetFlows(request)------> stream of RawResponse
 */
import { readFileSync } from "node:fs";
import { create, toJson, type Message } from "@bufbuild/protobuf";
import {
  Client,
  credentials,
  Metadata,
  type ChannelCredentials,
  type ClientReadableStream,
  type MethodDefinition,
} from "@grpc/grpc-js";
import { FLOW_CONTROL_WINDOW } from "../observe/hubble/client.js";
import { hubbleSchema } from "../observe/hubble/schema.js";
import { RESUME_METADATA } from "../observe/hubble/server.js";
import { observerService } from "../observe/hubble/service.js";
import { scanResponse, type RawResponse } from "./raw.js";

/** Where an agent's Observer API is, from its node record (or given by hand). */
export interface PeerAddress {
  readonly name: string;
  /** `unix:/path` or `host:port` (then TLS). */
  readonly target: string;
  readonly tls: boolean;
  /** Why the node cannot be reached (no address usable by this relay); the peer stays unavailable. */
  readonly unusable?: string;
}

/** TLS to the agents' TCP listeners: their CA, and the relay's client certificate for mutual TLS. */
export interface PeerTls {
  readonly caFile: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** The name the agents' certificates carry, when not the address's host. */
  readonly serverName?: string;
}

export type Json = { [k: string]: unknown };

/** GetFlows whose answers are kept as bytes (scanned for time and kind only). */
function rawFlowsMethod(): MethodDefinition<Message, RawResponse> {
  const m = observerService().GetFlows;
  return {
    ...m,
    responseSerialize: (r: RawResponse) => Buffer.from(r.bytes),
    responseDeserialize: (b: Buffer) => scanResponse(b),
  };
}

function channelCredentials(a: PeerAddress, tls: PeerTls | undefined): ChannelCredentials {
  if (!a.tls) return credentials.createInsecure();
  if (tls === undefined) throw new Error("TLS is needed and no --peer-tls-ca is given");
  return credentials.createSsl(
    readFileSync(tls.caFile),
    tls.keyFile === undefined ? null : readFileSync(tls.keyFile),
    tls.certFile === undefined ? null : readFileSync(tls.certFile),
  );
}

export class Peer {
  private readonly client: Client;
  /**
   * Health checks and unary calls on a connection of their own: HTTP/2 flow control is shared by
   * every stream of a connection, so a GetFlows stream the relay holds back (its client reads
   * slowly) would otherwise hold back the ServerStatus answer and make a busy node look dead.
   */
  private readonly control: Client;
  private readonly flowsMethod = rawFlowsMethod();

  constructor(
    readonly address: PeerAddress,
    tls: PeerTls | undefined,
  ) {
    const creds = channelCredentials(address, tls);
    const options = {
      // A restarted agent is found again within about a second (grpc's default backoff grows to 2 min).
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 1000,
      "grpc.max_receive_message_length": 64 << 20,
      "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
      ...(tls?.serverName !== undefined ? { "grpc.ssl_target_name_override": tls.serverName } : {}),
    };
    this.client = new Client(address.target, creds, { ...options, "grpc.use_local_subchannel_pool": 1 });
    this.control = new Client(address.target, creds, { ...options, "grpc.use_local_subchannel_pool": 1 });
  }

  private unary(name: "ServerStatus" | "GetNamespaces" | "GetNodes", timeoutMs: number): Promise<Json> {
    const m = observerService()[name];
    const s = hubbleSchema();
    return new Promise((resolve, reject) =>
      this.control.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        create(s[`${name}Request`]),
        { deadline: Date.now() + timeoutMs },
        (err, res) =>
          err || res === undefined
            ? reject(err ?? new Error("no answer"))
            : resolve(toJson(s[`${name}Response`], res, { useProtoFieldName: true }) as Json),
      ),
    );
  }

  serverStatus(timeoutMs: number): Promise<Json> {
    return this.unary("ServerStatus", timeoutMs);
  }

  namespaces(timeoutMs: number): Promise<Json> {
    return this.unary("GetNamespaces", timeoutMs);
  }

  /**
   * A GetFlows stream of this agent (the request as the client sent it, or adjusted). `resumed`:
   * it continues a broken stream at the request's `since`, and the agent counts the gap.
   */
  flows(request: Message, resumed = false): ClientReadableStream<RawResponse> {
    const m = this.flowsMethod;
    const md = new Metadata();
    if (resumed) md.set(RESUME_METADATA, "1");
    return this.client.makeServerStreamRequest(
      m.path,
      m.requestSerialize,
      m.responseDeserialize,
      request,
      md,
    );
  }

  close(): void {
    this.client.close();
    this.control.close();
  }
}
