/**
 * Mixed versions during a rolling upgrade (cluster mode, gateway-addresses.ts). Agents before
 * session 18 reserve their Gateways' addresses under the Services' key `lb/alloc/ip/<address>` and
 * never read `lb/gateways/`; their Services compare that key absent too. So a node's reservation
 * `lb/gateways/<node>/<address>` is also written at `lb/alloc/ip/<address>` (the mirror: the same
 * holder, the same lease, in the same transaction), and an older agent sees the address taken.
 *
 *   reserve:  txn( compare lb/alloc/ip/<a> absent, nothing new under lb/gateways/;
 *                  put lb/gateways/<node>/<a>, put lb/alloc/ip/<a> (the mirror) )
 *             permission denied --> the same transaction without the mirror; not tried again
 *   release:  both deleted, each only while still this holder's
 *   load:     the mirror put on the new lease (made when missing: a session-18 agent wrote none)
 *
 * Only where the node's etcd role may write `lb/alloc/`: under the least-privilege roles of
 * `membrane cluster etcd-setup` it may not, and neither may an older agent of any node (it runs
 * with its node's role, membrane-node-<node>), so no older agent can take an address there at all
 * (test/agent/gateway-addresses-mixed.test.ts). That is learned from etcd's answer, not configured.
 * An older agent of the same node (a downgrade) finds its own holder in the mirror and keeps the
 * address.
 */
import type { Logger } from "pino";
import { deniedByRole } from "../cluster/etcd-setup.js";
import { IP_KEY } from "../lb/reservations.js";
import type { Store, TxnRequest, TxnResult } from "../store/store.js";

export class LegacyMirror {
  /** false: this node's role may not write `lb/alloc/` (etcd said so); undefined: not known, tried. */
  private writable: boolean | undefined;

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /** The mirror is known not to be writable (least privilege): leave `lb/alloc/` alone. */
  get off(): boolean {
    return this.writable === false;
  }

  /** The mirror's key of an address. */
  key(ip: string): string {
    return IP_KEY + ip;
  }

  /**
   * `base` with `mirror` in one transaction, unless the mirror is off. Denied by the role with the
   * mirror: `base` alone (whose own refusal, if denied too, is the caller's to say), and the mirror is
   * off from then on when `base` alone was allowed.
   */
  async txn(base: TxnRequest, mirror: TxnRequest): Promise<TxnResult> {
    if (this.writable === false || mirror.ops.length === 0) return this.store.txn(base);
    try {
      const r = await this.store.txn({
        compare: [...base.compare, ...mirror.compare],
        ops: [...base.ops, ...mirror.ops],
      });
      this.writable = true;
      return r;
    } catch (e) {
      if (!deniedByRole(e)) throw e;
    }
    const r = await this.store.txn(base);
    this.writable = false;
    return r;
  }

  /**
   * At load: the mirror of a held address on `lease` (made when missing). False when another holder
   * has it there: an older agent took the address before this node mirrored it (a session-18 agent
   * wrote none), which that agent cannot see; the caller gives it up, said here.
   */
  async keep(ip: string, holder: string, lease: string): Promise<boolean> {
    if (this.writable === false) return true;
    const key = this.key(ip);
    const kv = await this.store.get(key);
    if (kv !== undefined && kv.value !== holder) {
      this.logger.warn(
        { address: ip, holder: kv.value },
        `gateway address ${ip} is also reserved under ${key} by "${kv.value}" (an older agent, which cannot see this node's): left to it, the Gateway gets another address`,
      );
      return false;
    }
    await this.store
      .txn({
        compare: [{ key, modRevision: kv?.modRevision ?? 0 }],
        ops: [{ type: "put", key, value: holder, lease }],
      })
      .then(
        () => {
          this.writable = true;
        },
        (e: unknown) => {
          if (!deniedByRole(e)) throw e;
          this.writable = false;
        },
      );
    return true;
  }
}
