/**
 * Hubble's Observer service as a grpc-js service definition whose messages
 * are encoded with the Hubble descriptors (@bufbuild/protobuf binary): the
 * same definition serves (server.ts) and calls (client.ts).
 *
 *   /observer.Observer/GetFlows       GetFlowsRequest -> stream GetFlowsResponse
 *   /observer.Observer/GetNodes       GetNodesRequest -> GetNodesResponse
 *   /observer.Observer/GetNamespaces  GetNamespacesRequest -> GetNamespacesResponse
 *   /observer.Observer/ServerStatus   ServerStatusRequest -> ServerStatusResponse
 */
import { fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { hubbleSchema } from "./schema.js";

type Method = MethodDefinition<Message, Message>;

function method(name: string, req: DescMessage, res: DescMessage, stream: boolean): Method {
  return {
    path: `/observer.Observer/${name}`,
    requestStream: false,
    responseStream: stream,
    requestSerialize: (m: Message) => Buffer.from(toBinary(req, m)),
    requestDeserialize: (b: Buffer) => fromBinary(req, b),
    responseSerialize: (m: Message) => Buffer.from(toBinary(res, m)),
    responseDeserialize: (b: Buffer) => fromBinary(res, b),
  };
}

export interface ObserverMethods {
  readonly GetFlows: Method;
  readonly GetNodes: Method;
  readonly GetNamespaces: Method;
  readonly ServerStatus: Method;
}

export function observerService(): ObserverMethods & ServiceDefinition {
  const s = hubbleSchema();
  return {
    GetFlows: method("GetFlows", s.GetFlowsRequest, s.GetFlowsResponse, true),
    GetNodes: method("GetNodes", s.GetNodesRequest, s.GetNodesResponse, false),
    GetNamespaces: method("GetNamespaces", s.GetNamespacesRequest, s.GetNamespacesResponse, false),
    ServerStatus: method("ServerStatus", s.ServerStatusRequest, s.ServerStatusResponse, false),
  };
}

/** Observer whose GetFlows answers are already-encoded GetFlowsResponse bytes (encode.ts, the relay). */
export function bytesFlowsService(): ServiceDefinition {
  const s = observerService();
  const passthrough = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return {
    ...s,
    GetFlows: { ...s.GetFlows, responseSerialize: passthrough },
  } as unknown as ServiceDefinition;
}
