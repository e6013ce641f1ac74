/**
 * IPsec node-key rotation (`membrane encryption rotate-key`, `--encryption-key-rotation 24h` with
 * `--encryption ipsec`): rotation.ts's four steps with IPsec's key files and switch. For node A
 * rotating its IKE key a1 -> a2 while B peers with it:
 *
 *   1. announce  A writes next.key (0600) and publishes `nextPublicKey: a2` beside `publicKey: a1`.
 *                B pins both keys for A (conns.ts; a replaced connection leaves its SAs alone).
 *   2. wait      for B to learn a2 through the store.
 *   3. switch    charon gets a2 (load-key); A's connections sign with a2 from now on; for each
 *                peer A makes a NEW IKE SA with its CHILD_SA under a2 (B accepts: it pins a2), and
 *                only once that one is installed closes the older IKE SAs (make before break: both
 *                CHILD_SAs carry the same selectors, so packets find an SA throughout, and none is
 *                ever sent in clear: the routes and the strict table do not depend on keys).
 *                Then charon forgets a1 (unload-key).
 *   4. publish   next.key renamed over node.key; the record says `publicKey: a2` alone; B pins a2 only.
 *
 * Why new IKE SAs and not strongSwan's reauthentication: a reauthentication makes the new IKE SA
 * with the configuration the old one was made with (a1), so it would prove nothing new.
 * A peer that does not answer under a2 in time keeps its old SA (the rotation is done: the old SA
 * needs no key to live and rekey its CHILD_SAs; the next SA to that peer is made under a2); its
 * name is logged.
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { KeyRotation } from "../rotation.js";
import { CHILD, parseListSas, type IkeSaState } from "./conns.js";
import {
  commitNextIpsecKey,
  discardNextIpsecKey,
  prepareNextIpsecKey,
  type IpsecNodeKey,
} from "./node-key.js";
import type { ViciClient } from "./vici-client.js";

export interface IpsecRotationParams {
  /** <state-dir>/ipsec */
  readonly dir: string;
  readonly logger: Logger;
  /** charon's VICI client now (undefined: charon is being restarted). */
  readonly vici: () => ViciClient | undefined;
  /** Connections sign with `key` from now on; resolves once charon holds them so (throws, and goes back, if not). */
  readonly useKey: (key: IpsecNodeKey) => Promise<void>;
  /** The connection names of the peers now. */
  readonly conns: () => readonly string[];
  readonly publish: () => Promise<void>;
  readonly everyMs?: number;
  readonly announceMs?: number;
  /** How long a peer may take to accept the new IKE SA (default 20 s). */
  readonly reauthMs?: number;
}

/**
 * The ids strongSwan may know a P-256 key by (`get-keys`, `unload-key`), hex: the SHA-1 of its
 * SubjectPublicKeyInfo, and of the bare EC point (the SPKI's last 65 bytes).
 */
export const viciKeyIds = (spkiBase64: string): string[] => {
  const der = Buffer.from(spkiBase64, "base64");
  return [der, der.subarray(-65)].map((b) => createHash("sha1").update(b).digest("hex"));
};

/** charon forgets the private key of `spkiBase64` (whichever id it lists it under). */
async function unloadKey(vici: ViciClient, spkiBase64: string): Promise<void> {
  let last: unknown;
  for (const id of viciKeyIds(spkiBase64))
    try {
      await vici.request("unload-key", { id });
      return;
    } catch (e) {
      last = e;
    }
  throw last;
}

export function ipsecKeyRotation(p: IpsecRotationParams, current: IpsecNodeKey): KeyRotation<IpsecNodeKey> {
  const log = p.logger;
  const r: KeyRotation<IpsecNodeKey> = new KeyRotation<IpsecNodeKey>(
    {
      keys: {
        prepare: () => prepareNextIpsecKey(p.dir),
        commit: (next) => commitNextIpsecKey(p.dir, next),
        discard: () => void discardNextIpsecKey(p.dir),
      },
      label: "IPsec",
      logger: log,
      publish: p.publish,
      ...(p.everyMs !== undefined ? { everyMs: p.everyMs } : {}),
      ...(p.announceMs !== undefined ? { announceMs: p.announceMs } : {}),
      switchTo: async (next) => {
        const vici = p.vici();
        if (!vici) throw new Error("charon is not running");
        const old = r.current;
        await vici.request("load-key", { type: "ecdsa", data: next.privatePem });
        await p.useKey(next);
        const kept: string[] = [];
        for (const conn of p.conns())
          if (!(await reauthenticate(vici, conn, p.reauthMs ?? 20_000, log))) kept.push(conn);
        await unloadKey(vici, old.publicKey).catch((e: Error) => {
          log.warn({ err: e.message }, "charon kept the old IPsec key");
        });
        if (kept.length > 0)
          log.warn(
            { conns: kept },
            "IPsec key rotated; these peers kept their SAs made under the old key (no answer under the new one)",
          );
      },
    },
    current,
  );
  return r;
}

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

async function sasOf(vici: ViciClient, conn: string): Promise<IkeSaState[]> {
  const sas = parseListSas((await vici.stream("list-sas", { ike: conn }, "list-sa")).events);
  return sas.filter((s) => s.conn === conn);
}

/**
 * A new IKE SA with its CHILD_SA to the peer of `conn` (made with the connection as loaded now),
 * then the older IKE SAs of `conn` closed; false when the new one was not up within `ms` (the old
 * ones are left as they are).
 */
export async function reauthenticate(
  vici: ViciClient,
  conn: string,
  ms: number,
  log: Logger,
): Promise<boolean> {
  const before = new Set(
    (await sasOf(vici, conn)).flatMap((s) => (s.uniqueId !== undefined ? [s.uniqueId] : [])),
  );
  const fresh = (s: IkeSaState): boolean => s.uniqueId !== undefined && !before.has(s.uniqueId);
  let asked = 0;
  for (const end = Date.now() + ms; Date.now() < end; await sleep(200)) {
    const sas = await sasOf(vici, conn);
    const up = sas.find((s) => fresh(s) && s.state === "ESTABLISHED" && s.children.some((c) => c.state === "INSTALLED")); // prettier-ignore
    if (up) {
      for (const id of before)
        await vici.request("terminate", { "ike-id": id, timeout: "-1" }).catch((e: Error) => {
          log.warn({ conn, ikeId: id, err: e.message }, "cannot close an IPsec SA made under the old key");
        });
      log.info({ conn, ikeId: up.uniqueId, closed: [...before] }, "IPsec SA made again under the new key");
      return true;
    }
    // Ask again every 3 s while no new SA is on its way (charon retransmits meanwhile).
    if (Date.now() - asked > 3000 && !sas.some((s) => fresh(s) && s.state === "CONNECTING")) {
      asked = Date.now();
      await vici.request("initiate", { child: CHILD, ike: conn, timeout: "-1" }).catch((e: Error) => {
        log.debug({ conn, err: e.message }, "IPsec initiate under the new key");
      });
    }
  }
  return false;
}
