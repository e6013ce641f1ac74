/**
 * Hubble's messages as @bufbuild/protobuf descriptors, read once from the
 * generated descriptor set (descriptors.ts, built from proto/ by
 * scripts/gen-hubble-descriptors.mjs): no protoc at run time.
 *
 *   HUBBLE_DESCRIPTOR_SET_BASE64 --fromBinary--> FileDescriptorSet --createFileRegistry--> HubbleSchema
 *
 * Built lazily on first use (nothing happens at import time).
 */
import {
  createFileRegistry,
  fromBinary,
  type DescMessage,
  type DescService,
  type Registry,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { HUBBLE_DESCRIPTOR_SET_BASE64 } from "./descriptors.js";

export interface HubbleSchema {
  readonly registry: Registry;
  readonly Flow: DescMessage;
  readonly FlowFilter: DescMessage;
  readonly LostEvent: DescMessage;
  readonly GetFlowsRequest: DescMessage;
  readonly GetFlowsResponse: DescMessage;
  readonly GetNodesRequest: DescMessage;
  readonly GetNodesResponse: DescMessage;
  readonly GetNamespacesRequest: DescMessage;
  readonly GetNamespacesResponse: DescMessage;
  readonly ServerStatusRequest: DescMessage;
  readonly ServerStatusResponse: DescMessage;
  readonly Observer: DescService;
}

let cached: HubbleSchema | undefined;

/** The descriptor set itself (binary), e.g. for a client built from it. */
export function hubbleDescriptorSet(): Uint8Array {
  return Buffer.from(HUBBLE_DESCRIPTOR_SET_BASE64, "base64");
}

export function hubbleSchema(): HubbleSchema {
  if (cached !== undefined) return cached;
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, hubbleDescriptorSet()));
  const msg = (name: string): DescMessage => {
    const d = registry.getMessage(name);
    if (d === undefined) throw new Error(`Hubble descriptor set lacks ${name}`);
    return d;
  };
  const observer = registry.getService("observer.Observer");
  if (observer === undefined) throw new Error("Hubble descriptor set lacks observer.Observer");
  cached = {
    registry,
    Flow: msg("flow.Flow"),
    FlowFilter: msg("flow.FlowFilter"),
    LostEvent: msg("flow.LostEvent"),
    GetFlowsRequest: msg("observer.GetFlowsRequest"),
    GetFlowsResponse: msg("observer.GetFlowsResponse"),
    GetNodesRequest: msg("observer.GetNodesRequest"),
    GetNodesResponse: msg("observer.GetNodesResponse"),
    GetNamespacesRequest: msg("observer.GetNamespacesRequest"),
    GetNamespacesResponse: msg("observer.GetNamespacesResponse"),
    ServerStatusRequest: msg("observer.ServerStatusRequest"),
    ServerStatusResponse: msg("observer.ServerStatusResponse"),
    Observer: observer,
  };
  return cached;
}
