/**
 * The relay's own GetFlowsResponse records: Hubble's `node_status` events
 * (relay.NodeStatusEvent) telling a client which nodes its stream covers.
 *
 *   PeerChange {name, state, message} --nodeStatusBytes--> GetFlowsResponse {node_status, time} bytes
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { hubbleSchema } from "../observe/hubble/schema.js";
import type { PeerState } from "./pool.js";

/** relay.NodeState numbers (Hubble's). */
export const NODE_STATE = { connected: 1, unavailable: 2, gone: 3 } as const;

export function nodeStatusBytes(
  state: PeerState,
  names: readonly string[],
  message: string,
  nowMs = Date.now(),
): Uint8Array {
  const s = hubbleSchema();
  const ev = s.registry.getMessage("relay.NodeStatusEvent");
  if (ev === undefined) throw new Error("Hubble descriptor set lacks relay.NodeStatusEvent");
  const nodeStatus = create(ev, { stateChange: NODE_STATE[state], nodeNames: [...names], message });
  const res = create(s.GetFlowsResponse, {
    responseTypes: { case: "nodeStatus", value: nodeStatus },
    time: timestampFromMs(nowMs),
  } as never);
  return toBinary(s.GetFlowsResponse, res);
}
