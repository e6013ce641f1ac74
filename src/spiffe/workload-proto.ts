/**
 * The SPIFFE Workload API's messages and gRPC method paths, from our declaration src/spiffe/proto/workload.proto
 * (proto/README.md) through its committed descriptor set and @bufbuild/protobuf. Built on first
 * use, not at import.
 */
import { createFileRegistry, fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf"; // prettier-ignore
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { WORKLOAD_DESCRIPTOR_SET_B64 } from "./proto/workload-descriptor.js";

export interface WorkloadSchema {
  readonly service: DescService;
  message(name: string): DescMessage;
}

let cached: WorkloadSchema | undefined;

export function workloadSchema(): WorkloadSchema {
  if (cached) return cached;
  const set = fromBinary(FileDescriptorSetSchema, Buffer.from(WORKLOAD_DESCRIPTOR_SET_B64, "base64"));
  const reg = createFileRegistry(set);
  const service = reg.getService("SpiffeWorkloadAPI");
  if (!service) throw new Error("SpiffeWorkloadAPI is not in the descriptor set");
  cached = {
    service,
    message(name) {
      const m = reg.getMessage(name);
      if (!m) throw new Error(`${name} is not in the descriptor set`);
      return m;
    },
  };
  return cached;
}

/** gRPC (de)serializers of one message type. */
export function codec(desc: DescMessage): {
  serialize: (m: MessageShape<DescMessage>) => Buffer;
  deserialize: (b: Buffer) => MessageShape<DescMessage>;
} {
  return {
    serialize: (m) => Buffer.from(toBinary(desc, m)),
    deserialize: (b) => fromBinary(desc, b),
  };
}

/** The gRPC path of a method: `/SpiffeWorkloadAPI/FetchX509SVID` (the proto has no package). */
export function methodPath(method: string): string {
  return `/${workloadSchema().service.typeName}/${method}`;
}
