/**
 * The gateway process's request events to the agent, one IPC message per event-loop turn
 * instead of one per request (main.ts), through the proxy's turn batcher (proxy/turn-batch.ts):
 * a message per request cost the gateway process a serialisation and a pipe write each, and the
 * agent a read and a parse each; at saturation a turn serves several requests (about 4 on 2
 * cores), so their events share one message: the gateway's CPU per request fell by about a
 * seventh. Order is kept; nothing waits longer than the turn it was made in.
 */
import { batchPerTurn } from "../proxy/turn-batch.js";
import type { GatewayEvent } from "./exchange.js";

/** The most events in one message (the agent's runner refuses a longer one). */
export const MAX_GATEWAY_EVENTS = 512;

export function batchEvents(
  send: (events: GatewayEvent[]) => void,
  later?: (f: () => void) => void,
): (e: GatewayEvent) => void {
  return batchPerTurn(send, MAX_GATEWAY_EVENTS, later);
}
