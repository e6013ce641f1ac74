/**
 * One line of a helper's JSON-lines output (bpftrace, the fanotify responder), read with a bound:
 * the object, or why the line is not one. Every reader of such output starts here.
 */
export function jsonObjectLine(line: string, maxLength: number): Record<string, unknown> | string {
  if (line.length > maxLength) return "line too long";
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return "not JSON";
  }
  return typeof o === "object" && o !== null && !Array.isArray(o)
    ? (o as Record<string, unknown>)
    : "not an object";
}
