/**
 * Node addresses: `ip` is another node (`remote-node`) or an API server
 * backend (`kube-apiserver`), so policies on those entities apply to it (the
 * engine's ipcache holds them); a remote node may carry its labels (cluster
 * registry), which fromNodes/toNodes select it by. Persisted under
 * `nodes/<ip>`; restored on start.
 */
import { MembraneError } from "../../errors.js";
import { parseAddr } from "../../labels/cidr.js";
import { nodeLabelSet } from "../../labels/node.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";

/** Store keys of node addresses: `nodes/<ip>` -> {kind, labels?}. */
export const NODE_ADDRS_KEY = "nodes/";

/** `host`: this node's own address (cluster mode, src/cluster/node-addresses.ts). */
export type NodeKind = "host" | "remote-node" | "kube-apiserver" | "ingress";

export class NodesController implements Controller {
  readonly name = "nodes";
  readonly revisions = new Revisions();

  constructor(private readonly d: ControllerDeps) {}

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(NODE_ADDRS_KEY)).kvs;
    for (const kv of kvs) {
      const { kind, labels } = JSON.parse(kv.value) as { kind: NodeKind; labels?: Record<string, string> };
      this.d.engine().setNodeAddress(kv.key.slice(NODE_ADDRS_KEY.length), kind, labels);
    }
    if (kvs.length > 0) this.revisions.bump();
  }

  setAddress(ip: string, kind: NodeKind, labels?: Readonly<Record<string, string>>): Promise<void> {
    return this.d.serial(async () => {
      if (parseAddr(ip) === undefined) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot register node address "${ip}": not an IP address`,
        );
      }
      if (labels !== undefined) {
        if (kind !== "remote-node")
          throw new MembraneError(
            "ENDPOINT_INVALID",
            `Cannot register node address ${ip}: only a remote node has labels`,
          );
        nodeLabelSet(labels); // LABEL_INVALID naming the label, before anything is written
      }
      await this.d.store.put(NODE_ADDRS_KEY + ip, JSON.stringify(labels ? { kind, labels } : { kind }));
      this.d.engine().setNodeAddress(ip, kind, labels);
      this.revisions.bump();
      await this.d.enforce();
    });
  }

  /** Forgets a node address (one not known changes nothing). */
  deleteAddress(ip: string): Promise<void> {
    return this.d.serial(async () => {
      if (parseAddr(ip) === undefined) {
        throw new MembraneError("ENDPOINT_INVALID", `Cannot forget node address "${ip}": not an IP address`);
      }
      await this.d.store.delete(NODE_ADDRS_KEY + ip);
      if (!this.d.engine().deleteNodeAddress(ip)) return;
      this.revisions.bump();
      await this.d.enforce();
    });
  }
}
