/**
 * proxy/: L7 enforcement on real sockets. Each proxy asks the policy for
 * every connection / request / query and reports every decision as a flow.
 *
 *                    ConnectionInfo (original dst, identities; later from the kernel redirect)
 *                          |
 *   client socket --> http/  handleHttpConnection --strict parse--> 403 | 400 | forward --> upstream
 *   DNS query     --> dns/   DnsProxy --rules--> REFUSED | forward --> resolver --> onAnswer --> answer
 *   TLS bytes     --> tls/   sni.ts (serverNames: splice | reset), intercept.ts (terminatingTLS: decrypt -> http/ -> originatingTLS)
 *   Kafka bytes   --> kafka/ handleKafkaConnection --FIFO--> forward | TOPIC_AUTHORIZATION_FAILED
 *                          |
 *            L7PolicyLookup.forConnection(key) -> {spec, allowAll} | undefined (fail closed)
 *            L7Sink(L7Event)                   -> flows (never header values or bodies)
 *
 * The policy matchers themselves live in policy/l7 (pure); this folder only
 * parses the wire, applies them and moves bytes.
 */
export * from "./types.js";
export { handleHttpConnection, DEFAULT_HTTP_LIMITS } from "./http/proxy.js";
export type { HttpProxyDeps, HttpProxyLimits } from "./http/proxy.js";
export { DnsProxy, DEFAULT_DNS_LIMITS } from "./dns/proxy.js";
export type { DnsProxyParams, DnsProxyLimits, DnsProxyStats } from "./dns/proxy.js";
export { parseClientHello } from "./tls/clienthello.js";
export type { ClientHelloResult } from "./tls/clienthello.js";
export { parseKafkaRequest } from "./kafka/request.js";
export type { KafkaRequest, KafkaParseResult, KafkaTopic } from "./kafka/request.js";
export { deniedResponse as kafkaDeniedResponse, TOPIC_AUTHORIZATION_FAILED } from "./kafka/response.js";
export { handleKafkaConnection, DEFAULT_KAFKA_LIMITS } from "./kafka/proxy.js";
export type { KafkaProxyDeps, KafkaProxyLimits } from "./kafka/proxy.js";
export { handleTlsSniConnection, DEFAULT_TLS_SNI_LIMITS } from "./tls/sni.js";
export type { TlsSniDeps, TlsSniLimits } from "./tls/sni.js";
export { handleTlsInterceptConnection, DEFAULT_TLS_INTERCEPT_LIMITS } from "./tls/intercept.js";
export type { TlsInterceptDeps, TlsInterceptLimits } from "./tls/intercept.js";
export { TlsSecretStore, LoadedTlsContext, DEFAULT_SECRETS_DIR } from "./tls/secrets.js";
export type { TlsSecretStoreParams, TlsRole } from "./tls/secrets.js";
export { handleHttp2Connection, DEFAULT_HTTP2_LIMITS, HTTP2_PREFACE, looksLikeHttp2 } from "./http2/proxy.js";
export type { Http2ProxyDeps, Http2ProxyLimits } from "./http2/proxy.js";
export { ConntrackClient } from "./conntrack/client.js";
