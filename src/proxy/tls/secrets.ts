/**
 * The certificates and keys a policy's `terminatingTLS` / `originatingTLS`
 * name, read from files laid out like mounted Kubernetes TLS secrets:
 *
 *   <dir>/<namespace>/<name>/tls.crt   certificate chain (PEM)      `certificate`, default tls.crt
 *                           /tls.key   private key (PEM, unencrypted) `privateKey`,  default tls.key
 *                           /ca.crt    trusted CA bundle (PEM)      `trustedCA`,   default ca.crt
 *
 * As in Cilium, an item the context names must exist; a default one is used
 * if it exists. The namespace defaults to "default". Names are checked (no
 * path escapes); files are size-limited, parsed (X.509, key, key matches the
 * certificate) and cached; a file whose mtime, size or inode changed is read
 * again, at most every `recheckMs`. Errors are MembraneErrors naming the
 * file and what to do. Key material is never in an error, a warning, JSON
 * or util.inspect output of a loaded context.
 */
import type { X509Certificate } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { MembraneError } from "../../errors.js";
import type { TlsContext } from "../../policy/types.js";
import {
  fileSignature,
  pemCertificates,
  pemPrivateKey,
  readLimitedFile,
  type Fail,
  type FileSig,
} from "./pemfiles.js";

export const DEFAULT_SECRETS_DIR = "/etc/membrane/secrets";
/** Enough for a full public CA bundle (~220 KiB). */
export const DEFAULT_MAX_SECRET_FILE_BYTES = 1024 * 1024;

export type TlsRole = "terminatingTLS" | "originatingTLS";

export interface TlsSecretStoreParams {
  readonly dir?: string;
  readonly maxFileBytes?: number;
  /** Cached files are not looked at again for this long (default 1000 ms). */
  readonly recheckMs?: number;
  /** Monotonic milliseconds (for tests). */
  readonly now?: () => number;
  /** Told each warning once per (re)load, e.g. a key file readable by others. */
  readonly onWarning?: (message: string) => void;
}

/** A loaded TLS context. The key is only reachable through `privateKey()`. */
export class LoadedTlsContext {
  readonly #key: string | undefined;
  constructor(
    /** `namespace/name`. */
    readonly secret: string,
    readonly files: {
      readonly certificate?: string;
      readonly privateKey?: string;
      readonly trustedCA?: string;
    },
    /** PEM chain, leaf first. */
    readonly certificate: string | undefined,
    key: string | undefined,
    /** PEM bundle; undefined: use the system's trusted CAs. */
    readonly trustedCA: string | undefined,
    readonly warnings: readonly string[],
  ) {
    this.#key = key;
  }
  privateKey(): string | undefined {
    return this.#key;
  }
  toJSON(): object {
    return { secret: this.secret, files: this.files, warnings: this.warnings };
  }
}

const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

interface CacheEntry {
  checkedAt: number;
  readonly sigs: string;
  readonly value: LoadedTlsContext | MembraneError;
}

export class TlsSecretStore {
  readonly dir: string;
  private readonly maxFileBytes: number;
  private readonly recheckMs: number;
  private readonly now: () => number;
  private readonly onWarning: ((m: string) => void) | undefined;
  private readonly cache = new Map<string, CacheEntry>();

  constructor(params: TlsSecretStoreParams = {}) {
    this.dir = params.dir ?? DEFAULT_SECRETS_DIR;
    this.maxFileBytes = params.maxFileBytes ?? DEFAULT_MAX_SECRET_FILE_BYTES;
    this.recheckMs = params.recheckMs ?? 1000;
    this.now = params.now ?? (() => performance.now());
    this.onWarning = params.onWarning;
  }

  /** Throws MembraneError TLS_SECRET_INVALID (the same one again until a file changes). */
  load(ctx: TlsContext, role: TlsRole): LoadedTlsContext {
    const ns = ctx.secret.namespace ?? "default";
    const ref = `${ns}/${ctx.secret.name}`;
    const fail = (why: string, hint: string, file?: string, cause?: unknown): MembraneError =>
      new MembraneError("TLS_SECRET_INVALID", `Cannot load TLS secret ${ref} (${role}): ${why}`, {
        hint,
        ...(file ? { location: { file } } : {}),
        ...(cause === undefined ? {} : { cause }),
      });
    for (const [what, v] of [
      ["namespace", ns],
      ["name", ctx.secret.name],
    ] as const) {
      if (!K8S_NAME.test(v) || v.includes(".."))
        throw fail(
          `the secret ${what} ${JSON.stringify(v)} is not a Kubernetes name`,
          "Use lower-case letters, digits, '-' and '.'.",
        );
    }
    for (const [field, v] of [
      ["trustedCA", ctx.trustedCA],
      ["certificate", ctx.certificate],
      ["privateKey", ctx.privateKey],
    ] as const) {
      if (v !== undefined && (!SECRET_KEY.test(v) || v === "." || v === ".."))
        throw fail(
          `${field} ${JSON.stringify(v)} is not a file name`,
          "Name a file inside the secret's directory, e.g. tls.crt.",
        );
    }
    const dir = path.join(this.dir, ns, ctx.secret.name);
    const items = {
      certificate: {
        file: path.join(dir, ctx.certificate ?? "tls.crt"),
        explicit: ctx.certificate !== undefined,
      },
      privateKey: {
        file: path.join(dir, ctx.privateKey ?? "tls.key"),
        explicit: ctx.privateKey !== undefined,
      },
      trustedCA: { file: path.join(dir, ctx.trustedCA ?? "ca.crt"), explicit: ctx.trustedCA !== undefined },
    };
    const key = JSON.stringify([role, items]);
    const now = this.now();
    const cached = this.cache.get(key);
    if (cached && now - cached.checkedAt < this.recheckMs) return unwrap(cached.value);
    const sigs = Object.values(items).map((i) => fileSignature(i.file));
    const sigText = JSON.stringify(sigs);
    if (cached && cached.sigs === sigText) {
      cached.checkedAt = now;
      return unwrap(cached.value);
    }
    let value: LoadedTlsContext | MembraneError;
    try {
      value = this.read(ref, dir, role, items, sigs, fail);
      for (const w of value.warnings) this.onWarning?.(w);
    } catch (e) {
      if (!(e instanceof MembraneError)) throw e;
      value = e;
    }
    this.cache.set(key, { checkedAt: now, sigs: sigText, value });
    return unwrap(value);
  }

  private read(
    ref: string,
    dir: string,
    role: TlsRole,
    items: Record<"certificate" | "privateKey" | "trustedCA", { file: string; explicit: boolean }>,
    sigs: readonly FileSig[],
    fail: Fail,
  ): LoadedTlsContext {
    if (!fs.existsSync(dir))
      throw fail(
        `the directory ${dir} does not exist`,
        `Create it with the secret's files (tls.crt, tls.key, ca.crt), or point the agent's secrets directory option at where they are (now ${this.dir}).`,
        dir,
      );
    const warnings: string[] = [];
    const present = (i: { file: string }): boolean => sigs.find((s) => s.path === i.file)?.sig !== "missing";
    const text = (i: { file: string; explicit: boolean }, field: string): string | undefined => {
      if (!present(i)) {
        if (!i.explicit) return undefined;
        throw fail(
          `${i.file} does not exist (named by ${field})`,
          `Create the file, or fix ${role}.${field} in the policy.`,
          i.file,
        );
      }
      return readLimitedFile(i.file, this.maxFileBytes, fail);
    };
    const certText = text(items.certificate, "certificate");
    const keyText = text(items.privateKey, "privateKey");
    const caText = text(items.trustedCA, "trustedCA");
    const certFile = items.certificate.file;
    const keyFile = items.privateKey.file;

    if (role === "terminatingTLS" && certText === undefined)
      throw fail(
        `${certFile} does not exist`,
        "terminatingTLS needs the certificate (and key) the proxy shows clients: create tls.crt and tls.key.",
        certFile,
      );
    if ((certText === undefined) !== (keyText === undefined)) {
      const [has, lacks] = certText === undefined ? [keyFile, certFile] : [certFile, keyFile];
      throw fail(
        `${lacks} does not exist, but ${has} does`,
        "A certificate and its private key go together: add the missing file.",
        lacks,
      );
    }
    let chain: X509Certificate[] | undefined;
    if (certText !== undefined) chain = pemCertificates(certText, certFile, fail);
    if (keyText !== undefined && chain) {
      const k = pemPrivateKey(keyText, keyFile, fail);
      if (!(chain[0] as X509Certificate).checkPrivateKey(k))
        throw fail(
          `${keyFile} is not the key of the first certificate in ${certFile}`,
          "Put the matching tls.crt and tls.key in the secret.",
          keyFile,
        );
      const mode = sigs.find((s) => s.path === keyFile)?.sig.split(":")[3];
      // The proxy reads keys as its own user or group (it runs without root), so group access
      // is how it is meant to be granted; access for everyone else is not.
      if (mode !== undefined && (Number(mode) & 0o007) !== 0)
        warnings.push(
          `TLS secret ${ref}: ${keyFile} is accessible by others (mode ${(Number(mode) & 0o777).toString(8)}); chmod o-rwx it`,
        );
      const leaf = chain[0] as X509Certificate;
      if (Date.parse(leaf.validTo) < Date.now())
        warnings.push(`TLS secret ${ref}: the certificate in ${certFile} expired on ${leaf.validTo}`);
    }
    if (caText !== undefined) pemCertificates(caText, items.trustedCA.file, fail);
    const files = {
      ...(certText !== undefined ? { certificate: certFile, privateKey: keyFile } : {}),
      ...(caText !== undefined ? { trustedCA: items.trustedCA.file } : {}),
    };
    return new LoadedTlsContext(ref, files, certText, keyText, caText, warnings);
  }
}

function unwrap(v: LoadedTlsContext | MembraneError): LoadedTlsContext {
  if (v instanceof MembraneError) throw v;
  return v;
}
