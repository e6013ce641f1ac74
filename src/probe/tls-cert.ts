/**
 * A throwaway self-signed certificate for probe TLS servers, made once per
 * process with the openssl CLI in a temporary directory (removed at once:
 * the PEM texts are kept in memory).
 *
 *   selfSignedCert() --openssl req -x509 (EC P-256, 1 day)--> {cert, key} (PEM)
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRaw } from "../datapath/exec.js";

export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

let made: Promise<PemPair> | undefined;

/** The process's probe certificate; rejects with openssl's message when it cannot be made. */
export function selfSignedCert(): Promise<PemPair> {
  made ??= make();
  made.catch(() => (made = undefined));
  return made;
}

async function make(): Promise<PemPair> {
  const dir = await mkdtemp(join(tmpdir(), "membrane-probe-tls-"));
  try {
    const keyFile = join(dir, "key.pem");
    const certFile = join(dir, "cert.pem");
    const r = await runRaw([
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=membrane-probe",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ]);
    if (r.status !== 0) {
      throw new Error(`Cannot make a probe TLS certificate: openssl failed: ${r.stderr.trim()}`);
    }
    return { cert: await readFile(certFile, "utf8"), key: await readFile(keyFile, "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
