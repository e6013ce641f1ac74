/**
 * Checking API request bodies, field by field, before anything runs.
 *
 *   req.body ──fields(req, {name: "required", labels: "optional"})──▶ the object, or
 *            ╰─▶ MembraneError API_REQUEST_INVALID (HTTP 400) naming the field:
 *                `Cannot handle POST /v1/endpoints: field "name" must be a string`
 *
 * Unknown fields are refused (a typo must not be ignored silently), like
 * unknown fields in policy YAML. Nothing here knows what the fields mean:
 * the routes (agent/routes.ts) say which fields a body has and their types.
 */
import { MembraneError } from "../../errors.js";
import type { ApiRequest } from "./router.js";

export type Body = Record<string, unknown>;

/** A 400 answer about one field (or the body itself when `path` is ""). */
export function badField(
  req: Pick<ApiRequest, "method" | "path">,
  fieldPath: string,
  why: string,
): MembraneError {
  // The path may hold a caller's key (a label name): bounded here, for every caller.
  const path = fieldPath.length > 200 ? `${fieldPath.slice(0, 200)}…` : fieldPath;
  const what = path === "" ? "the body" : `field "${path}"`;
  return new MembraneError("API_REQUEST_INVALID", `Cannot handle ${req.method} ${req.path}: ${what} ${why}`, {
    ...(path === "" ? {} : { location: { path } }),
  });
}

export function isObject(v: unknown): v is Body {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The body as an object whose keys are all in `spec`; fields marked
 * "required" must be present (not undefined or null).
 */
export function fields(req: ApiRequest, spec: Readonly<Record<string, "required" | "optional">>): Body {
  const b = req.body;
  if (!isObject(b)) throw badField(req, "", `must be a JSON object, not ${kindOf(b)}`);
  for (const k of Object.keys(b)) {
    if (!Object.hasOwn(spec, k)) {
      const known = Object.keys(spec).join(", ") || "none";
      throw badField(req, k, `is not a field of this request (fields: ${known})`);
    }
  }
  for (const [k, need] of Object.entries(spec)) {
    if (need === "required" && (b[k] === undefined || b[k] === null)) throw badField(req, k, "is required");
  }
  return b;
}

/** `null`, `an array`, `a number`, ... for messages. */
export function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

export function string(req: ApiRequest, b: Body, field: string, max: number): string {
  const v = b[field];
  if (typeof v !== "string") throw badField(req, field, `must be a string, not ${kindOf(v)}`);
  if (v.length > max) throw badField(req, field, `must be at most ${max} characters`);
  return v;
}

export function optionalBoolean(req: ApiRequest, b: Body, field: string): boolean | undefined {
  const v = b[field];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw badField(req, field, `must be true or false, not ${kindOf(v)}`);
  return v;
}

/** `{key: "value", ...}` (at most 256 entries); absent = {}. */
export function stringMap(req: ApiRequest, b: Body, field: string): Record<string, string> {
  const v = b[field] ?? {};
  if (!isObject(v)) throw badField(req, field, `must map label keys to string values, not ${kindOf(v)}`);
  const entries = Object.entries(v);
  if (entries.length > 256) throw badField(req, field, "must have at most 256 entries");
  for (const [k, x] of entries) {
    if (typeof x !== "string")
      throw badField(req, `${field}.${k}`, `must be a string value, not ${kindOf(x)}`);
  }
  return { ...(v as Record<string, string>) };
}

/** A list of at most `max` items; absent = []. */
export function list(req: ApiRequest, b: Body, field: string, max: number): unknown[] {
  const v = b[field] ?? [];
  if (!Array.isArray(v)) throw badField(req, field, `must be a list, not ${kindOf(v)}`);
  if (v.length > max) throw badField(req, field, `must have at most ${max} items`);
  return v;
}

/** A list item that must be an object with only the `spec` keys. */
export function item(
  req: ApiRequest,
  path: string,
  v: unknown,
  spec: Readonly<Record<string, "required" | "optional">>,
): Body {
  if (!isObject(v)) throw badField(req, path, `must be an object, not ${kindOf(v)}`);
  for (const k of Object.keys(v))
    if (!Object.hasOwn(spec, k)) throw badField(req, `${path}.${k}`, "is not a known field");
  for (const [k, need] of Object.entries(spec))
    if (need === "required" && v[k] === undefined) throw badField(req, `${path}.${k}`, "is required");
  return v;
}
