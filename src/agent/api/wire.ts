/**
 * What travels over the agent API besides plain JSON results: errors.
 *
 *   MembraneError ──errorBody──▶ {"error": {code, message, hint, issues, location}} + HTTP status
 *                 ◀─errorFromBody── (the CLI rebuilds the same MembraneError)
 *
 * Shared by the server (agent/api/server.ts) and the client (agent/client.ts)
 * so both sides agree on one shape.
 */
import {
  ERROR_CODES,
  escapeControls,
  MembraneError,
  type ErrorCode,
  type ErrorLocation,
  type Issue,
} from "../../errors.js";

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    hint?: string;
    issues?: Issue[];
    location?: ErrorLocation;
  };
}

export const JSON_TYPE = "application/json; charset=utf-8";
export const NDJSON_TYPE = "application/x-ndjson";

const STATUS: Partial<Record<ErrorCode, number>> = {
  POLICY_YAML_SYNTAX: 400,
  POLICY_UNSUPPORTED: 400,
  TRACING_POLICY_UNSUPPORTED: 400,
  TRACING_POLICY_UNSAFE: 400,
  INPUT_LIMIT_EXCEEDED: 400,
  POLICY_L7_CONFLICT: 409,
  IDENTITY_EXHAUSTED: 409,
  IPAM_EXHAUSTED: 409,
  AGENT_ALREADY_RUNNING: 409,
};

/** 400 for invalid input, 404 for a missing thing, 409 for a conflict with current state, 500 for the rest. */
export function httpStatus(code: ErrorCode): number {
  const s = STATUS[code];
  if (s !== undefined) return s;
  if (code.endsWith("_INVALID")) return 400;
  if (code.endsWith("_NOT_FOUND")) return 404;
  return 500;
}

/** The error as the API answers it; every text escaped (escapeControls): it quotes user input. */
export function errorBody(e: MembraneError): ErrorBody {
  const body: ErrorBody = { error: { code: e.code, message: escapeControls(e.message) } };
  if (e.hint !== undefined) body.error.hint = escapeControls(e.hint);
  if (e.issues.length > 0)
    body.error.issues = e.issues.map((i) => ({ ...safeLocation(i), message: escapeControls(i.message) }));
  if (e.location !== undefined) body.error.location = safeLocation(e.location);
  return body;
}

function safeLocation(l: ErrorLocation): ErrorLocation {
  const out: ErrorLocation = { ...l };
  if (l.file !== undefined) out.file = escapeControls(l.file);
  if (l.path !== undefined) out.path = escapeControls(l.path);
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCode(c: unknown): c is ErrorCode {
  return typeof c === "string" && Object.hasOwn(ERROR_CODES, c);
}

function cleanLocation(v: unknown): ErrorLocation {
  const out: ErrorLocation = {};
  if (!isRecord(v)) return out;
  if (typeof v["file"] === "string") out.file = v["file"];
  if (typeof v["line"] === "number") out.line = v["line"];
  if (typeof v["column"] === "number") out.column = v["column"];
  if (typeof v["path"] === "string") out.path = v["path"];
  return out;
}

/** Is `v` exactly an error line/body, i.e. `{"error": {"code": ..., "message": ...}}`? */
export function isErrorBody(v: unknown): boolean {
  if (!isRecord(v) || Object.keys(v).length !== 1) return false;
  const e = v["error"];
  return isRecord(e) && typeof e["code"] === "string" && typeof e["message"] === "string";
}

/** Rebuilds the agent's MembraneError; undefined if `v` is not an error body. */
export function errorFromBody(v: unknown): MembraneError | undefined {
  if (!isErrorBody(v) || !isRecord(v)) return undefined;
  const e = v["error"] as Record<string, unknown>;
  const message = String(e["message"]);
  // An agent newer than this CLI may send a code we do not know: keep its words, use a generic code.
  const code = isCode(e["code"]) ? e["code"] : "API_FAILED";
  const opts: { hint?: string; issues?: Issue[]; location?: ErrorLocation } = {};
  if (typeof e["hint"] === "string") opts.hint = e["hint"];
  if (Array.isArray(e["issues"])) {
    opts.issues = e["issues"]
      .filter(isRecord)
      .map((i) => ({ ...cleanLocation(i), message: String(i["message"] ?? "") }));
  }
  if (isRecord(e["location"])) opts.location = cleanLocation(e["location"]);
  return new MembraneError(
    code,
    code === e["code"] ? message : `${message} (agent error code ${String(e["code"])})`,
    opts,
  );
}
