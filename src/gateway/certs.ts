/**
 * Listener certificates from the secrets directory the TLS proxy reads
 * (`<dir>/<namespace>/<name>/tls.crt` and `tls.key`, as a mounted Kubernetes
 * TLS secret): parsed and checked (the key matches the certificate) by the
 * proxy's TlsSecretStore. A problem is a sentence for the listener's status;
 * key material never leaves `keyPair`.
 */
import { MembraneError } from "../errors.js";
import { TlsSecretStore } from "../proxy/tls/secrets.js";
import type { KeyPair } from "./server.js";

export class GatewayCertificates {
  private readonly store: TlsSecretStore;

  constructor(dir: string) {
    this.store = new TlsSecretStore({ dir, recheckMs: 0 });
  }

  problem(namespace: string, name: string): string | undefined {
    try {
      const ctx = this.store.load({ secret: { namespace, name } }, "terminatingTLS");
      if (!ctx.certificate || !ctx.privateKey()) return "tls.crt and tls.key are both required";
      return undefined;
    } catch (e) {
      return e instanceof MembraneError ? e.message : String(e);
    }
  }

  keyPair(namespace: string, name: string): KeyPair | undefined {
    try {
      const ctx = this.store.load({ secret: { namespace, name } }, "terminatingTLS");
      const key = ctx.privateKey();
      return ctx.certificate && key ? { cert: ctx.certificate, key } : undefined;
    } catch {
      return undefined;
    }
  }
}
