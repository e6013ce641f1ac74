/**
 * A redirected TCP connection -> the handler for its parser.
 *
 *   spec.parser  http  -> terminatingTLS ? TLS intercept (HTTP rules inside, originatingTLS out)
 *                         : first bytes are the HTTP/2 preface ? HTTP/2 (gRPC) : HTTP/1.1
 *                kafka -> Kafka
 *                tls   -> SNI check, bytes passed through
 *                other / conflict / none -> reset (fail closed)
 */
import type { Socket } from "node:net";
import { handleHttpConnection } from "../http/proxy.js";
import { handleHttp2Connection } from "../http2/proxy.js";
import { sniffHttp2 } from "../http2/preface.js";
import { handleKafkaConnection } from "../kafka/proxy.js";
import { handleTlsInterceptConnection } from "../tls/intercept.js";
import { stageTlsContext } from "../tls/policy.js";
import { TlsSecretStore } from "../tls/secrets.js";
import { handleTlsSniConnection } from "../tls/sni.js";
import {
  l7Parser,
  lookupKey,
  type ConnectionInfo,
  type L7LookupResult,
  type L7PolicyLookup,
  type L7Sink,
} from "../types.js";

export interface DispatchDeps {
  readonly lookup: L7PolicyLookup;
  readonly sink: L7Sink;
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly secretsDir?: string;
}

/** Longest wait for a client's first bytes when the protocol must be sniffed. */

export function dispatchConnection(sock: Socket, info: ConnectionInfo, deps: DispatchDeps): void {
  const policy = deps.lookup.forConnection(lookupKey(info));
  if (!policy) return sock.resetAndDestroy() as unknown as void;
  const parser = policy.spec.parser;
  if (!l7Parser(policy, parser)) return failClosed(sock, info, deps, "two L7 parsers claim this port");
  switch (parser) {
    case "http":
      return sniffHttp(sock, info, deps, policy);
    case "kafka":
      return handleKafkaConnection(sock, info, deps);
    case "tls":
      return handleTlsSniConnection(sock, info, deps);
    default:
      return failClosed(sock, info, deps, `no ${parser} proxy on this node`);
  }
}

function failClosed(sock: Socket, info: ConnectionInfo, deps: DispatchDeps, reason: string): void {
  deps.sink({
    type: "http",
    verdict: "error",
    srcIdentity: info.srcIdentity,
    dstIdentity: info.dstIdentity,
    endpoint: info.endpoint,
    direction: info.direction,
    reason,
  });
  sock.resetAndDestroy();
}

/** HTTP/1.1 or HTTP/2 (prior knowledge): decided by the client's first bytes. */
function sniffHttp(sock: Socket, info: ConnectionInfo, deps: DispatchDeps, policy: L7LookupResult): void {
  const term = stageTlsContext(policy, "terminatingTLS");
  if (term === "conflict") return failClosed(sock, info, deps, "two TLS contexts claim this port");
  if (term)
    return handleTlsInterceptConnection(sock, info, { ...deps, secrets: secretStore(deps.secretsDir) });
  sniffHttp2(sock, (h2, head) => {
    if (h2) return handleHttp2Connection(sock, info, deps, head);
    // HTTP/1.1 reads the socket itself: give the bytes back; it takes them first (and resumes a
    // stream itself: a socket it reads natively must not be resumed, or Node would read it too).
    sock.unshift(head);
    handleHttpConnection(sock, info, deps);
  });
}

let secrets: TlsSecretStore | undefined;
/** One secret store per process (it caches loaded certificates). */
function secretStore(dir: string | undefined): TlsSecretStore {
  secrets ??= new TlsSecretStore(dir !== undefined ? { dir } : {});
  return secrets;
}
