/**
 * The certificate with which a node's agent opens and answers pooled connections (channel.ts):
 * an X.509-SVID `spiffe://<trust domain>/membrane/node/<node name>` signed by the node's own CA
 * root, its key in this process's memory only, issued again at half its life.
 *
 *   SvidProvider.ca --sign--> node certificate --> TLS context (cert, key, every root of the bundle)
 *   peer's chain --validated against the roots THAT node publishes, names that node--> ok
 *
 * Checking a peer against its own node's roots (not the whole bundle) means that no other node of
 * the trust domain can open a pooled connection in its name.
 */
import * as tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { MembraneError } from "../errors.js";
import { exportPkcs8, newKeyPair } from "../spiffe/certs.js";
import type { SvidProvider } from "../spiffe/provider.js";
import type { SvidValidationCache } from "../spiffe/validate-cache.js";

const SEGMENT = /^[A-Za-z0-9._-]{1,200}$/;

/** The SPIFFE ID of a node's agent. */
export function nodeSpiffeId(trustDomain: string, node: string): string {
  if (!SEGMENT.test(node)) throw new MembraneError("AUTH_SETUP_FAILED", `Cannot name node ${JSON.stringify(node.slice(0, 60))} in a SPIFFE ID: a node name for mutual authentication is 1 to 200 characters of A-Z, a-z, 0-9, '.', '-', '_'`); // prettier-ignore
  return `spiffe://${trustDomain}/membrane/node/${node}`;
}

interface Issued {
  readonly ctx: tls.SecureContext;
  readonly notAfter: number;
  readonly renewAt: number;
  readonly bundleRev: number;
}

export class NodeCredential {
  private cur: Issued | undefined;
  private pending: Promise<Issued> | undefined;

  constructor(
    private readonly provider: SvidProvider,
    readonly node: string,
  ) {}

  /** The TLS context to present (issued again past half life or when the bundle changed). */
  async context(): Promise<{ ctx: tls.SecureContext; notAfter: number }> {
    const now = Date.now();
    const c = this.cur;
    if (c && now < c.renewAt && c.bundleRev === this.provider.bundleRevision) return c;
    return (this.pending ??= this.issue().finally(() => {
      this.pending = undefined;
    }));
  }

  private async issue(): Promise<Issued> {
    const pr = this.provider;
    const keys = await newKeyPair();
    const { leaf, chain } = await pr.ca.sign(nodeSpiffeId(pr.trustDomain, this.node), keys.publicKey);
    const key = await exportPkcs8(keys.privateKey);
    const pem = (d: Buffer, label: string): string =>
      `-----BEGIN ${label}-----\n${d.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END ${label}-----\n`;
    const ctx = tls.createSecureContext({
      key: pem(key, "PRIVATE KEY"),
      cert: chain.map((d) => new X509Certificate(d).toString()).join(""),
      ca: pr.bundle().map((d) => new X509Certificate(d).toString()),
      minVersion: "TLSv1.3",
      maxVersion: "TLSv1.3",
    });
    const nb = leaf.notBefore.getTime();
    const na = leaf.notAfter.getTime();
    this.cur = { ctx, notAfter: na, renewAt: nb + (na - nb) / 2, bundleRev: pr.bundleRevision };
    return this.cur;
  }
}

/** Checks that `chain` is node `node`'s certificate, signed by a root that node publishes; returns its notAfter. */
export function checkNodeChain(
  chain: readonly Buffer[],
  node: string,
  roots: readonly Buffer[],
  trustDomain: string,
  cache: SvidValidationCache,
): number {
  const refuse = (why: string): never => {
    throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot accept a pooled connection of node ${node}: ${why}`); // prettier-ignore
  };
  if (chain.length === 0) refuse("it presented no certificate");
  if (roots.length === 0) refuse("its node record publishes no root");
  let v;
  try {
    v = cache.validate(chain, roots, { trustDomain, now: Date.now() });
  } catch (e) {
    return refuse((e as Error).message);
  }
  const want = nodeSpiffeId(trustDomain, node);
  if (v.id.uri !== want) refuse(`it presented ${v.id.uri}, not ${want}`);
  return v.notAfter.getTime();
}
