/**
 * The membrane-cni process: reads stdin (bounded), runs the command of
 * CNI_COMMAND (plugin.ts), writes the result or error object to stdout and
 * exits 0 or 1. Run by hand (no CNI_COMMAND) it answers with error 4 naming
 * the variable and pointing at examples/cni/, like any other misuse.
 */
import { MAX_STDIN, run } from "./plugin.js";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin as AsyncIterable<Buffer>) {
    // Past the limit by a byte is enough for run() to name it; never a truncated configuration that fits.
    chunks.push(size + c.length > MAX_STDIN + 1 ? c.subarray(0, MAX_STDIN + 1 - size) : c);
    size += c.length;
    if (size > MAX_STDIN) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function main(): Promise<void> {
  const stdin = process.env["CNI_COMMAND"] ? await readStdin() : "";
  const out = await run(process.env, stdin);
  if (out.stdout !== "") process.stdout.write(out.stdout + "\n");
  if (out.status !== 0 && process.stdout.isTTY === true)
    process.stderr.write("membrane-cni: see the error object above\n");
  process.exitCode = out.status;
}
