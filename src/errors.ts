/**
 * Typed errors with stable codes (STYLE.md §7).
 *
 * Every error Membrane shows a user is a MembraneError: a stable `code`, a
 * message of the form "Cannot <do what>: <why>", optionally where it applies
 * (file, line, field path) and a hint saying what to do next. Codes live in
 * ERROR_CODES below and nowhere else; test/errors.test.ts keeps the list
 * honest (every code used in src/ is registered, every registered code is used).
 */

export const ERROR_CODES = {
  // policy/api: parsing and validation of user YAML
  POLICY_YAML_SYNTAX: "The file is not valid YAML",
  POLICY_INVALID: "A policy document is invalid",
  POLICY_UNSUPPORTED: "A policy uses a field Membrane does not enforce yet",
  INPUT_LIMIT_EXCEEDED:
    "An input (policy file, scenario file, request) is larger, deeper or expands further than a limit allows",
  // policy: resolution
  POLICY_L7_CONFLICT: "Two L7 parsers were asked to handle the same peer and port",
  POLICY_NOT_FOUND: "No such policy",
  // labels / identity
  LABEL_INVALID: "A label or selector is malformed",
  IDENTITY_EXHAUSTED: "No free identity is left in the range",
  // scenario files and queries
  SCENARIO_INVALID: "A scenario file is invalid",
  QUERY_INVALID: "A query names something that does not exist",
  // agent, store, datapath
  STORE_FAILED: "The state store failed",
  STORE_LOCKED: "Another process holds the state directory",
  NFT_APPLY_FAILED: "The kernel rejected an nftables transaction",
  NETNS_FAILED: "A network namespace or link operation failed",
  DATAPATH_STATE_INVALID: "The desired datapath state cannot be compiled",
  BYPASS_RESET_FAILED: "Connections that bypass a new L7 redirect could not all be reset",
  ENDPOINT_INVALID: "An endpoint request is invalid",
  SERVICE_INVALID: "A Service or EndpointSlice document is invalid",
  ENDPOINT_NOT_FOUND: "No such endpoint",
  IPAM_EXHAUSTED: "No free address is left in the pod CIDR",
  WORKLOAD_ISOLATION_FAILED: "A workload cannot be started with the isolation asked for",
  GATEWAY_INVALID: "A Gateway API or Ingress document is invalid",
  TLS_SECRET_INVALID: "A TLS secret named by a policy is missing, unreadable or malformed",
  API_FAILED: "The agent API answered with an error",
  API_REQUEST_INVALID: "A request to the agent API is malformed or too large",
  API_ROUTE_NOT_FOUND: "No such agent API route",
  AGENT_ALREADY_RUNNING: "Another agent already serves the API socket",
  AGENT_UNREACHABLE: "The agent could not be reached",
  CONFIG_INVALID: "The configuration is invalid",
  CNI_REQUEST_INVALID: "A CNI runtime's call to membrane-cni is invalid or cannot be served",
  // cluster
  CLUSTER_INVALID: "A cluster-mode setting or cluster record is invalid",
  CLUSTER_UNAVAILABLE: "The cluster store cannot be reached or refused this node",
  ENCRYPTION_FAILED:
    "Transparent encryption (the WireGuard device, charon for IPsec, their keys or peers) cannot be set up",
  ENCRYPTION_INVALID: "An encryption setting or a peer's encryption record is invalid",
  CLUSTER_NOT_REALIZED: "Not every live node enforced a change within the time allowed",
  // k8s
  K8S_API_FAILED:
    "The Kubernetes API could not be read (refused, unreachable, or an answer Membrane cannot read)",
  // observe
  NFLOG_FAILED: "The NFLOG event reader failed",
  FLOW_FILTER_INVALID: "A flow filter or observe flag is invalid",
  FLOW_EXPORT_FAILED: "Flows could not be written to the export file",
  METRICS_SERVE_FAILED: "The metrics endpoint could not listen",
  METRICS_CONFIG_INVALID: "A Hubble metrics handler or option (--hubble-metrics) is unknown or malformed",
  HUBBLE_SERVE_FAILED: "Hubble's Observer API (gRPC) could not listen",
  HUBBLE_CALL_FAILED: "A call to a Hubble Observer API failed or was refused",
  RELAY_SERVE_FAILED: "The relay's Observer API (gRPC) could not listen",
  // runtime
  RUNTIME_SOURCE_FAILED: "The process event source (native tracepoint programs or bpftrace) could not start",
  RUNTIME_BTF_INVALID: "The kernel's BTF (struct layouts for the native event source) could not be read",
  // proxy
  CONNTRACK_FAILED: "A conntrack lookup over ctnetlink failed",
  PROXY_FAILED: "The node's L7 proxy process could not start or stopped answering",
  // runtime: TracingPolicy and its enforcer
  TRACING_POLICY_INVALID: "A TracingPolicy document is invalid",
  TRACING_POLICY_UNSUPPORTED: "A TracingPolicy uses a hook, selector or action this kernel cannot serve",
  TRACING_POLICY_UNSAFE: "A TracingPolicy kills without being narrowed to workloads and calls",
  RUNTIME_ENFORCER_FAILED:
    "The runtime enforcer (bpftrace, or its cgroup connect guard) could not load or stopped",
  // spiffe: the built-in SPIFFE identity provider and the Workload API
  SPIFFE_ID_INVALID: "A SPIFFE ID or trust domain is malformed",
  SPIFFE_SVID_INVALID: "An X.509-SVID or its chain breaks a rule of the SPIFFE X.509-SVID spec",
  SPIFFE_CA_FAILED: "The SPIFFE CA could not load, create, store or use its root key",
  SPIFFE_WORKLOAD_API_FAILED: "The SPIFFE Workload API could not serve an endpoint",
  // auth: mutual authentication in the datapath (src/auth/)
  AUTH_SETUP_FAILED: "The mutual-authentication table, queue rule or queue reader could not be set up",
  AUTH_HANDSHAKE_FAILED: "A mutual-authentication handshake between two identities failed",
  AUTH_SVID_NOT_FOUND: "This node holds no X.509-SVID for that identity",
  AUTH_UNAVAILABLE: "Mutual authentication is off on this agent (start it with --spiffe)",
  // cli
  CLI_USAGE: "A command was given invalid arguments",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorLocation {
  file?: string;
  line?: number;
  column?: number;
  /** Field path inside the document, e.g. `spec.ingress[0].toPorts[0].ports[0].port`. */
  path?: string;
}

/** One problem found while validating; a MembraneError may carry many. */
export interface Issue extends ErrorLocation {
  message: string;
}

export class MembraneError extends Error {
  readonly code: ErrorCode;
  readonly location: ErrorLocation | undefined;
  readonly hint: string | undefined;
  readonly issues: readonly Issue[];

  constructor(
    code: ErrorCode,
    message: string,
    opts: { location?: ErrorLocation; hint?: string; cause?: unknown; issues?: readonly Issue[] } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "MembraneError";
    this.code = code;
    this.location = opts.location;
    this.hint = opts.hint;
    this.issues = opts.issues ?? [];
  }

  /**
   * Human form: every issue on its own line as `file:line: path: message`.
   * Names, labels and file names come from users and the network: each part
   * is escaped (escapeControls), so only the line breaks between parts are real.
   */
  describe(): string {
    const lines = [escapeControls(this.message)];
    for (const i of this.issues) lines.push("  " + escapeControls(formatIssue(i)));
    if (this.hint) lines.push("hint: " + escapeControls(this.hint));
    return lines.join("\n");
  }
}

export function formatIssue(i: Issue): string {
  const where = [i.file, i.line !== undefined ? String(i.line) : undefined]
    .filter((x) => x !== undefined)
    .join(":");
  const parts = [where, i.path].filter((x) => x !== undefined && x !== "");
  return (parts.length ? parts.join(": ") + ": " : "") + i.message;
}

export function isMembraneError(e: unknown): e is MembraneError {
  return e instanceof MembraneError;
}

/**
 * Control characters (C0, DEL, C1: ESC, NUL, newline, ...) shown as `\x1b`,
 * never sent raw: error texts quote user input and end up on terminals and in
 * logs. Idempotent (backslashes are left alone), so escaping twice is harmless.
 */
export function escapeControls(s: string): string {
  return s.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}
