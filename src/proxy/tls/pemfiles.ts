/**
 * Reading a secret's files: bounded reads, change signatures, and PEM
 * certificates and keys checked with node:crypto. Every problem goes
 * through the caller's `fail`, which names the secret; nothing here ever
 * puts key bytes in a message (crypto's own errors are dropped for keys).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import fs from "node:fs";
import { MembraneError } from "../../errors.js";

/** Makes the error to throw: what is wrong, what to do, the file, the cause. */
export type Fail = (why: string, hint: string, file?: string, cause?: unknown) => MembraneError;

export interface FileSig {
  readonly path: string;
  /** inode:size:mtime:mode, or "missing". */
  readonly sig: string;
}

/** Reads at most `maxBytes` (a larger file is an error, even one that grows while read). */
export function readLimitedFile(file: string, maxBytes: number, fail: Fail): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw fail(`${file} is not a regular file`, "Replace it with the PEM file.", file);
    if (st.size > maxBytes)
      throw fail(
        `${file} is ${st.size} bytes (at most ${maxBytes})`,
        "Trim the PEM bundle to the certificates needed.",
        file,
      );
    const buf = Buffer.alloc(maxBytes + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n > maxBytes)
      throw fail(
        `${file} is larger than ${maxBytes} bytes`,
        "Trim the PEM bundle to the certificates needed.",
        file,
      );
    return buf.subarray(0, n).toString("latin1");
  } catch (e) {
    if (e instanceof MembraneError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? "error";
    throw fail(
      `${file} cannot be read (${code})`,
      "Check that the file exists and that the agent may read it.",
      file,
      e,
    );
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** What tells a changed file: inode, size, mtime and mode (or "missing"). */
export function fileSignature(file: string): FileSig {
  try {
    const st = fs.statSync(file);
    return { path: file, sig: `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}` };
  } catch {
    return { path: file, sig: "missing" };
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?-----END CERTIFICATE-----/g;

export function pemCertificates(text: string, file: string, fail: Fail): X509Certificate[] {
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0)
    throw fail(
      `${file} holds no PEM certificate`,
      'The file must contain "-----BEGIN CERTIFICATE-----" blocks.',
      file,
    );
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw fail(
        `certificate ${i + 1} in ${file} is not valid X.509`,
        "Regenerate or re-export the certificate in PEM form.",
        file,
        e,
      );
    }
  });
}

export function pemPrivateKey(text: string, file: string, fail: Fail): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text))
    throw fail(
      `${file} holds no PEM private key`,
      'The file must contain a "-----BEGIN PRIVATE KEY-----" block.',
      file,
    );
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text))
    throw fail(
      `${file} is encrypted`,
      "Membrane needs an unencrypted key: openssl pkey -in <file> -out tls.key",
      file,
    );
  try {
    return createPrivateKey({ key: text, format: "pem" });
  } catch {
    // The cause is dropped on purpose: it must never carry key bytes.
    throw fail(`${file} is not a valid private key`, "Regenerate or re-export the key in PEM form.", file);
  }
}
