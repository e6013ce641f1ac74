/**
 * One Tetragon JSON export line per event, byte for byte what `JSON.stringify(event) + "\n"` gives,
 * with each process's own JSON made once: a process appears in its exec event, in its exit event
 * and as the parent of every child (an exec loop's parent in thousands of lines), and the objects
 * the process cache hands out are shared and never changed, so their text is kept beside them
 * (a WeakMap: it goes with the object).
 *
 *   process_exec / process_exit --> fields in the event's own key order, processes from the memo
 *   any other event              --> JSON.stringify
 */
import type { RuntimeEvent, TetragonProcess } from "./events.js";

const memo = new WeakMap<TetragonProcess, string>();

function processJson(p: TetragonProcess): string {
  let s = memo.get(p);
  if (s === undefined) {
    s = JSON.stringify(p);
    memo.set(p, s);
  }
  return s;
}

/**
 * The export line of `e`, newline included. The exec and exit events are the shapes
 * controllers/runtime.ts builds (keys in this order; test/runtime/export-line.test.ts holds it
 * to JSON.stringify); anything else is stringified whole.
 */
export function exportLine(e: RuntimeEvent): string {
  const tail = `,"node_name":${JSON.stringify(e.node_name)},"time":${JSON.stringify(e.time)}}\n`;
  if ("process_exec" in e) {
    const b = e.process_exec;
    const parent = b.parent ? `,"parent":${processJson(b.parent)}` : "";
    return `{"process_exec":{"process":${processJson(b.process)}${parent}}${tail}`;
  }
  if ("process_exit" in e) {
    const b = e.process_exit;
    const parent = b.parent ? `,"parent":${processJson(b.parent)}` : "";
    const signal = b.signal !== undefined ? `,"signal":${JSON.stringify(b.signal)}` : "";
    const status = b.status !== undefined ? `,"status":${b.status}` : "";
    return `{"process_exit":{"process":${processJson(b.process)}${parent}${signal}${status},"time":${JSON.stringify(b.time)}}${tail}`;
  }
  return JSON.stringify(e) + "\n";
}
