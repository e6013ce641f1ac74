/**
 * The node's WireGuard key pair: x25519 from node:crypto, in WireGuard's text
 * form (base64 of the 32 raw bytes).
 *
 *   <state-dir>/wireguard/private.key   0600, the private key (never logged, never served)
 *   <state-dir>/wireguard/key.json      0600, {publicKey, createdAt} (what status shows)
 *   <state-dir>/wireguard/next.key      0600, during a rotation only: the announced next key
 *
 * A restarted agent loads the same key, so its peers keep their sessions.
 * A rotation (rotation.ts) writes next.key, announces it, switches the interface to it,
 * then commitNextKey() renames it over private.key (atomic: a crash leaves one or the
 * other, and settlePendingKey() on the next start keeps whichever the interface holds).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MembraneError } from "../errors.js";

export interface NodeKey {
  /** The private key file (what `wg set ... private-key FILE` reads). */
  readonly privateKeyFile: string;
  readonly publicKey: string;
  /** ISO time the pair was made. */
  readonly createdAt: string;
}

/** PKCS#8 DER of an X25519 private key is this prefix then the 32 raw bytes (RFC 8410). */
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");

const b64 = (b64url: string): string => Buffer.from(b64url, "base64url").toString("base64");

/** Whether `s` is a WireGuard key: base64 of exactly 32 bytes. */
export function isWgKey(s: unknown): s is string {
  return typeof s === "string" && /^[A-Za-z0-9+/]{43}=$/.test(s) && Buffer.from(s, "base64").length === 32;
}

/** The public key of a private key in WireGuard's form. */
export function publicKeyOf(privateKey: string): string {
  if (!isWgKey(privateKey))
    throw new MembraneError("ENCRYPTION_FAILED", "Cannot read the WireGuard private key: not 32 bytes");
  const der = Buffer.concat([PKCS8_X25519, Buffer.from(privateKey, "base64")]);
  const pub = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" }));
  const x = pub.export({ format: "jwk" }).x;
  if (typeof x !== "string") throw new MembraneError("ENCRYPTION_FAILED", "Cannot derive the public key");
  return b64(x);
}

/** A fresh pair: [private, public] in WireGuard's form. */
export function generateWgKeyPair(): [string, string] {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const d = privateKey.export({ format: "jwk" }).d;
  const x = publicKey.export({ format: "jwk" }).x;
  if (typeof d !== "string" || typeof x !== "string")
    throw new MembraneError("ENCRYPTION_FAILED", "Cannot generate a WireGuard key pair");
  return [b64(d), b64(x)];
}

function writePrivate(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Loads the node's key pair from `dir`, making one on first use. */
export function loadOrCreateNodeKey(dir: string): NodeKey {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const privateKeyFile = join(dir, "private.key");
  let priv: string | undefined;
  try {
    priv = readFileSync(privateKeyFile, "utf8").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw keyError(privateKeyFile, e);
  }
  if (priv === undefined) return rotateNodeKey(dir);
  if (!isWgKey(priv))
    throw new MembraneError(
      "ENCRYPTION_FAILED",
      `Cannot use the WireGuard private key in ${privateKeyFile}: not a base64 32-byte key`,
      { hint: "remove the file: the agent makes a new pair (peers learn it from the node registry)" },
    );
  const publicKey = publicKeyOf(priv);
  let createdAt = new Date().toISOString();
  try {
    const meta = JSON.parse(readFileSync(join(dir, "key.json"), "utf8")) as {
      publicKey?: unknown;
      createdAt?: unknown;
    };
    if (meta.publicKey === publicKey && typeof meta.createdAt === "string") createdAt = meta.createdAt;
  } catch {
    writeFileSync(join(dir, "key.json"), JSON.stringify({ publicKey, createdAt }) + "\n", { mode: 0o600 });
  }
  return { privateKeyFile, publicKey, createdAt };
}

/** Makes a new pair in `dir` (replacing the old one). */
export function rotateNodeKey(dir: string): NodeKey {
  const [priv, publicKey] = generateWgKeyPair();
  const privateKeyFile = join(dir, "private.key");
  const createdAt = new Date().toISOString();
  writePrivate(privateKeyFile, priv + "\n");
  writeFileSync(join(dir, "key.json"), JSON.stringify({ publicKey, createdAt }) + "\n", { mode: 0o600 });
  return { privateKeyFile, publicKey, createdAt };
}

const NEXT = "next.key";

/** Makes the next pair of a rotation in `dir` (next.key, 0600); private.key is untouched. */
export function prepareNextKey(dir: string): NodeKey {
  const [priv, publicKey] = generateWgKeyPair();
  const privateKeyFile = join(dir, NEXT);
  writePrivate(privateKeyFile, priv + "\n");
  return { privateKeyFile, publicKey, createdAt: new Date().toISOString() };
}

/** The next key becomes the node's key: next.key renamed over private.key, then key.json. */
export function commitNextKey(dir: string, next: NodeKey): NodeKey {
  const privateKeyFile = join(dir, "private.key");
  renameSync(next.privateKeyFile, privateKeyFile);
  const meta = JSON.stringify({ publicKey: next.publicKey, createdAt: next.createdAt }) + "\n";
  writePrivate(join(dir, "key.json"), meta);
  return { privateKeyFile, publicKey: next.publicKey, createdAt: next.createdAt };
}

/** Removes an announced next key that was not switched to. */
export function discardNextKey(dir: string): void {
  rmSync(join(dir, NEXT), { force: true });
}

/**
 * A start after a rotation was cut short (agent killed): when the interface already holds
 * next.key's key (the switch happened, the rename not), next.key is committed; otherwise it is
 * dropped (the switch never happened: the old key stays). Returns whether it was committed.
 */
export function settlePendingKey(dir: string, interfaceKey: string | undefined): boolean {
  let priv: string;
  try {
    priv = readFileSync(join(dir, NEXT), "utf8").trim();
  } catch {
    return false;
  }
  const pub = isWgKey(priv) ? publicKeyOf(priv) : undefined;
  if (pub !== undefined && pub === interfaceKey) {
    commitNextKey(dir, {
      privateKeyFile: join(dir, NEXT),
      publicKey: pub,
      createdAt: new Date().toISOString(),
    });
    return true;
  }
  discardNextKey(dir);
  return false;
}

function keyError(file: string, e: unknown): MembraneError {
  return new MembraneError(
    "ENCRYPTION_FAILED",
    `Cannot read the WireGuard private key ${file}: ${(e as Error).message}`,
    { cause: e },
  );
}
