/**
 * The node's IPsec identity: an ECDSA P-256 key pair made by the node (node:crypto), whose public
 * half is pinned by its peers through the node registry (as WireGuard's keys are); IKEv2 signs
 * with it (strongSwan's raw public keys, `auth = pubkey`).
 *
 *   <state-dir>/ipsec/node.key    0600, PKCS#8 PEM: the private key (handed only to charon, over VICI)
 *   <state-dir>/ipsec/key.json    0600, {publicKey, createdAt}
 *   <state-dir>/ipsec/next.key    0600, during a rotation only (rekey-auth.ts): the announced next key
 *
 * Why not a cluster PSK: every node holding it could authenticate as any other node, and it is one
 * more secret to hand to every node. Why not a node certificate from the SPIFFE CA: the CA is per
 * node today (a cluster-wide issuer is designed, not built: spiffe/provider.ts). A pinned key
 * lets a node speak only as itself, and needs nothing but the registry peers already trust.
 */
import { createPublicKey, generateKeyPairSync, createPrivateKey, type KeyObject } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MembraneError } from "../../errors.js";

export interface IpsecNodeKey {
  /** The private key, PKCS#8 PEM (never logged, never served). */
  readonly privatePem: string;
  /** SubjectPublicKeyInfo DER, base64: what the node record carries. */
  readonly publicKey: string;
  readonly createdAt: string;
}

const MAX_SPKI = 200;

/** Whether `s` is a base64 SPKI of an EC P-256 key (a node record's `encryption.publicKey`). */
export function isIpsecPublicKey(s: unknown): s is string {
  if (typeof s !== "string" || s.length > MAX_SPKI || !/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return false;
  try {
    const k = createPublicKey({ key: Buffer.from(s, "base64"), format: "der", type: "spki" });
    return k.asymmetricKeyType === "ec" && k.asymmetricKeyDetails?.namedCurve === "prime256v1";
  } catch {
    return false;
  }
}

/** The PEM form of a record's public key (what charon's `pubkeys` takes). */
export function publicPem(spkiBase64: string): string {
  return createPublicKey({ key: Buffer.from(spkiBase64, "base64"), format: "der", type: "spki" })
    .export({ format: "pem", type: "spki" })
    .toString();
}

const spkiOf = (k: KeyObject): string =>
  createPublicKey(k).export({ format: "der", type: "spki" }).toString("base64");

export function loadOrCreateIpsecKey(dir: string): IpsecNodeKey {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, "node.key");
  let pem: string | undefined;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT")
      throw new MembraneError("ENCRYPTION_FAILED", `Cannot read the IPsec node key ${file}: ${(e as Error).message}`); // prettier-ignore
  }
  if (pem === undefined) return rotateIpsecKey(dir);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new MembraneError(
      "ENCRYPTION_FAILED",
      `Cannot use the IPsec node key in ${file}: not a PEM private key`,
      {
        hint: "remove the file: the agent makes a new pair (peers learn it from the node registry)",
      },
    );
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1")
    throw new MembraneError(
      "ENCRYPTION_FAILED",
      `Cannot use the IPsec node key in ${file}: not an EC P-256 key`,
    );
  const publicKey = spkiOf(key);
  let createdAt = new Date().toISOString();
  try {
    const meta = JSON.parse(readFileSync(join(dir, "key.json"), "utf8")) as { publicKey?: unknown; createdAt?: unknown }; // prettier-ignore
    if (meta.publicKey === publicKey && typeof meta.createdAt === "string") createdAt = meta.createdAt;
  } catch {
    writeFileSync(join(dir, "key.json"), JSON.stringify({ publicKey, createdAt }) + "\n", { mode: 0o600 });
  }
  return { privatePem: pem, publicKey, createdAt };
}

/** A new pair in `dir` (replacing the old one). */
export function rotateIpsecKey(dir: string): IpsecNodeKey {
  const k = newPair(join(dir, "node.key"));
  writeFileSync(join(dir, "key.json"), JSON.stringify({ publicKey: k.publicKey, createdAt: k.createdAt }) + "\n", { mode: 0o600 }); // prettier-ignore
  return k;
}

/** A fresh pair whose private key is written (0600, atomically) to `file`. */
function newPair(file: string): IpsecNodeKey {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const privatePem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  writeFileSync(`${file}.tmp`, privatePem, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
  return { privatePem, publicKey: spkiOf(privateKey), createdAt: new Date().toISOString() };
}

const NEXT = "next.key";

/** A rotation's next pair (next.key); node.key is untouched. */
export function prepareNextIpsecKey(dir: string): IpsecNodeKey {
  return newPair(join(dir, NEXT));
}

/** The next pair becomes the node's: next.key renamed over node.key, then key.json. */
export function commitNextIpsecKey(dir: string, next: IpsecNodeKey): IpsecNodeKey {
  renameSync(join(dir, NEXT), join(dir, "node.key"));
  writeFileSync(join(dir, "key.json"), JSON.stringify({ publicKey: next.publicKey, createdAt: next.createdAt }) + "\n", { mode: 0o600 }); // prettier-ignore
  return next;
}

/**
 * Removes a next key that was not committed (a rotation that failed, or one an agent crash cut
 * short: the next start keeps node.key, publishes it, and peers pin it again; SAs made under the
 * next key stay up until they are made again, which needs no key but the one the record names).
 */
export function discardNextIpsecKey(dir: string): boolean {
  try {
    rmSync(join(dir, NEXT));
    return true;
  } catch {
    return false;
  }
}
