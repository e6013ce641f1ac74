/**
 * W3C Trace Context: the trace id of a request's `traceparent` header, for
 * the L7 flow's `trace_context.parent.trace_id` (as Hubble fills it).
 *
 *   traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01  -->  "4bf92f3577b34da6a3ce929d0e0e4736"
 *
 * The header comes from the client: anything that is not a valid
 * traceparent is ignored (no trace id), never passed on as text. Valid:
 * version, trace-id, parent-id and flags in lower-case hex; version `ff`
 * is invalid; version 00 has nothing after the flags; a later version may
 * carry more after a `-`; an all-zero trace-id or parent-id is invalid. A
 * request with two traceparent fields has none (the specification says to
 * ignore it).
 */

const TRACEPARENT = /^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_PARENT = "0".repeat(16);

/** The trace id of one traceparent value; undefined when it is not valid. */
export function traceIdOf(value: string | undefined): string | undefined {
  if (value === undefined || value.length > 512) return undefined;
  const m = TRACEPARENT.exec(value);
  if (m === null) return undefined;
  const [, version, traceId, parentId, , rest] = m;
  if (version === "ff" || traceId === ZERO_TRACE || parentId === ZERO_PARENT) return undefined;
  if (version === "00" && rest !== undefined) return undefined;
  return traceId;
}

/** The trace id of a request's header fields (lower-case names); none when traceparent is absent or repeated. */
export function traceIdOfFields(
  fields: Iterable<{ readonly lower: string; readonly value: string }>,
): string | undefined {
  let found: string | undefined;
  let n = 0;
  for (const f of fields)
    if (f.lower === "traceparent") {
      found = f.value;
      n++;
    }
  return n === 1 ? traceIdOf(found) : undefined;
}

/** `{traceId}` of a request's header fields, or `{}`: what an L7 event spreads in. */
export function traceOf(fields: Iterable<{ readonly lower: string; readonly value: string }>): {
  traceId?: string;
} {
  const traceId = traceIdOfFields(fields);
  return traceId === undefined ? {} : { traceId };
}
