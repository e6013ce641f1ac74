/**
 * The Endpoint objects of flows (Hubble's source / destination), one per endpoint state and
 * shared by every flow that names it (read-only, frozen). The flows live in the ring, so an
 * Endpoint per flow was garbage the collector copied; the agent's answers are fresh objects
 * per call, so entries are checked field by field (the label list is the agent's, one array per
 * identity) and rebuilt when anything differs.
 *
 *   (endpoint id, identity, namespace, labels, pod name, node) --get--> Endpoint
 *   (identity, labels, node) of a peer that is not a local pod --peer--> Endpoint
 */
import type { Endpoint } from "./flow.js";

const MAX = 65536;

export class EndpointViews {
  private readonly local = new Map<number, Endpoint>();
  private readonly peers = new Map<number, Endpoint>();

  get(
    id: number,
    identity: number,
    namespace: string,
    labels: readonly string[],
    name: string,
    node: string | undefined,
  ): Endpoint {
    const c = this.local.get(id);
    if (
      c !== undefined &&
      c.identity === identity &&
      c.labels === labels &&
      c.pod_name === name &&
      c.namespace === namespace &&
      c.node_name === node
    )
      return c;
    const e: Endpoint = { ID: id, identity, namespace, labels: labels as string[], pod_name: name };
    if (node !== undefined) e.node_name = node;
    if (this.local.size >= MAX) this.local.clear();
    this.local.set(id, Object.freeze(e));
    return e;
  }

  peer(identity: number, labels: readonly string[] | undefined, node: string | undefined): Endpoint {
    const c = this.peers.get(identity);
    if (c !== undefined && c.labels === labels && c.node_name === node) return c;
    const e: Endpoint = labels === undefined ? { identity } : { identity, labels: labels as string[] };
    if (node !== undefined) e.node_name = node;
    if (this.peers.size >= MAX) this.peers.clear();
    this.peers.set(identity, Object.freeze(e));
    return e;
  }
}
