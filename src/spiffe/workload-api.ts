/**
 * The SPIFFE Workload API (SPIFFE_Workload_API.md) for one endpoint: a gRPC server whose
 * connections all come through that endpoint's own socket (endpoint-socket.ts), so the caller is
 * the endpoint the socket belongs to; it gets its identity's X.509-SVID and nothing else.
 *
 *   connection (from the endpoint's socket) --inject--> grpc Server (this endpoint)
 *     FetchX509SVID    stream: SVID + key + bundle now, again on rotation / bundle / identity change
 *     FetchX509Bundles stream: {spiffe://<td>: roots}, again when the bundle changes
 *     other methods    UNIMPLEMENTED (JWT-SVIDs are not issued yet)
 *
 * Every call must carry the metadata `workload.spiffe.io: true`, else INVALID_ARGUMENT (the
 * endpoint spec's SSRF guard); an endpoint without an identity gets PERMISSION_DENIED. Hostile
 * input is bounded: requests of at most MAX_REQUEST_BYTES, at most MAX_STREAMS open streams per
 * endpoint (RESOURCE_EXHAUSTED beyond), at most MAX_CONNECTIONS connections (endpoint-socket.ts).
 */
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { SvidProvider } from "./provider.js";
import { codec, methodPath, workloadSchema } from "./workload-proto.js";

export const MAX_REQUEST_BYTES = 4096;
export const MAX_STREAMS = 32;

export interface WorkloadApiParams {
  readonly provider: SvidProvider;
  /** The identity of the endpoint this server serves, now (undefined: none yet). */
  readonly identity: () => number | undefined;
  readonly logger: Logger;
  /** For logs: `namespace/name` of the endpoint. */
  readonly endpoint: string;
}

type Stream = grpc.ServerWritableStream<unknown, unknown>;

export class WorkloadApiServer {
  private readonly server: grpc.Server;
  private readonly injector: grpc.ConnectionInjector;
  private readonly refreshers = new Set<() => void>();

  constructor(private readonly p: WorkloadApiParams) {
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": MAX_REQUEST_BYTES,
      "grpc.max_concurrent_streams": MAX_STREAMS,
    });
    const s = workloadSchema();
    const def = (method: string, req: string, res: string): grpc.MethodDefinition<unknown, unknown> => {
      const i = codec(s.message(req));
      const o = codec(s.message(res));
      return {
        path: methodPath(method),
        requestStream: false,
        responseStream: true,
        requestSerialize: i.serialize as (m: unknown) => Buffer,
        requestDeserialize: i.deserialize,
        responseSerialize: o.serialize as (m: unknown) => Buffer,
        responseDeserialize: o.deserialize,
        originalName: method,
      };
    };
    this.server.addService(
      {
        FetchX509SVID: def("FetchX509SVID", "X509SVIDRequest", "X509SVIDResponse"),
        FetchX509Bundles: def("FetchX509Bundles", "X509BundlesRequest", "X509BundlesResponse"),
      },
      {
        FetchX509SVID: (call: Stream) => this.stream(call, () => this.svidResponse()),
        FetchX509Bundles: (call: Stream) => this.stream(call, () => Promise.resolve(this.bundlesResponse())),
      },
    );
    this.injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  /** A connection accepted on this endpoint's socket. */
  inject(conn: Duplex): void {
    this.injector.injectConnection(conn);
  }

  /** The endpoint's identity may have changed: every open stream sends what it has now. */
  refresh(): void {
    for (const f of [...this.refreshers]) f();
  }

  close(): void {
    for (const f of [...this.refreshers]) this.refreshers.delete(f);
    this.injector.destroy();
    this.server.forceShutdown();
  }

  private stream(
    call: Stream,
    build: () => Promise<{ key: string; msg: unknown } | grpc.StatusObject>,
  ): void {
    const header = call.metadata.get("workload.spiffe.io");
    if (header.length !== 1 || header[0] !== "true") {
      call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: "security header missing from request (workload.spiffe.io: true)" }); // prettier-ignore
      return;
    }
    if (this.refreshers.size >= MAX_STREAMS) {
      call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: `at most ${MAX_STREAMS} open streams per workload` }); // prettier-ignore
      return;
    }
    let last = "";
    let busy = Promise.resolve();
    const send = (): void => {
      busy = busy.then(async () => {
        if (call.cancelled || call.destroyed) return;
        const r = await build().catch((e: unknown): grpc.StatusObject => {
          this.p.logger.warn({ endpoint: this.p.endpoint, err: (e as Error).message }, "Workload API: cannot build an answer"); // prettier-ignore
          return { code: grpc.status.UNAVAILABLE, details: "the identity provider cannot answer now", metadata: new grpc.Metadata() }; // prettier-ignore
        });
        if ("code" in r) {
          stop();
          call.emit("error", r);
        } else if (r.key !== last) {
          last = r.key;
          call.write(r.msg);
        }
      });
    };
    const unsubscribe = this.p.provider.subscribe((e) => {
      if (e.kind === "bundle" || e.identity === this.p.identity()) send();
    });
    const stop = (): void => {
      unsubscribe();
      this.refreshers.delete(send);
    };
    this.refreshers.add(send);
    call.on("cancelled", stop);
    call.on("close", stop);
    call.on("error", stop);
    send();
  }

  private async svidResponse(): Promise<{ key: string; msg: unknown } | grpc.StatusObject> {
    const identity = this.p.identity();
    if (identity === undefined) return denied("this endpoint has no identity yet");
    const svid = await this.p.provider.ensure(identity);
    if (this.p.identity() !== identity) return this.svidResponse(); // relabelled meanwhile
    const s = workloadSchema();
    const bundle = Buffer.concat(this.p.provider.bundle());
    const msg = create(s.message("X509SVIDResponse"), {
      svids: [
        create(s.message("X509SVID"), {
          spiffeId: svid.spiffeId,
          x509Svid: Buffer.concat(svid.chain),
          x509SvidKey: svid.privateKeyPkcs8(),
          bundle,
        }),
      ],
    });
    return { key: `${svid.serial}/${this.p.provider.bundleRevision}`, msg };
  }

  private bundlesResponse(): { key: string; msg: unknown } | grpc.StatusObject {
    if (this.p.identity() === undefined) return denied("this endpoint has no identity yet");
    const td = `spiffe://${this.p.provider.trustDomain}`;
    const msg = create(workloadSchema().message("X509BundlesResponse"), {
      bundles: { [td]: Buffer.concat(this.p.provider.bundle()) },
    });
    return { key: String(this.p.provider.bundleRevision), msg };
  }
}

function denied(details: string): grpc.StatusObject {
  return { code: grpc.status.PERMISSION_DENIED, details, metadata: new grpc.Metadata() };
}
