/**
 * Node addresses: `ip` is another node (`remote-node`) or an API server
 * backend (`kube-apiserver`), so policies on those entities apply to it (the
 * engine's ipcache holds them). Persisted under `nodes/<ip>`; restored on start.
 */
import { MembraneError } from "../../errors.js";
import { parseAddr } from "../../labels/cidr.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";

/** Store keys of node addresses: `nodes/<ip>` -> {kind}. */
export const NODE_ADDRS_KEY = "nodes/";

/** `host`: this node's own address (cluster mode, src/cluster/node-addresses.ts). */
export type NodeKind = "host" | "remote-node" | "kube-apiserver";

export class NodesController implements Controller {
  readonly name = "nodes";
  readonly revisions = new Revisions();

  constructor(private readonly d: ControllerDeps) {}

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(NODE_ADDRS_KEY)).kvs;
    for (const kv of kvs) {
      const { kind } = JSON.parse(kv.value) as { kind: NodeKind };
      this.d.engine().setNodeAddress(kv.key.slice(NODE_ADDRS_KEY.length), kind);
    }
    if (kvs.length > 0) this.revisions.bump();
  }

  setAddress(ip: string, kind: NodeKind): Promise<void> {
    return this.d.serial(async () => {
      if (parseAddr(ip) === undefined) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot register node address "${ip}": not an IP address`,
        );
      }
      await this.d.store.put(NODE_ADDRS_KEY + ip, JSON.stringify({ kind }));
      this.d.engine().setNodeAddress(ip, kind);
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
