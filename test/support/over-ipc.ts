/**
 * Messages sent by a real child process over a real IPC channel (Node's JSON serialisation, as the
 * proxy's and the gateway's are), for the tests of what the agent accepts from those processes
 * (test/proxy/from-proxy.test.ts, test/gateway/from-gateway.test.ts): NaN arrives as null, an
 * object's prototype keys are gone, exactly as from the real processes.
 */
import { spawn } from "node:child_process";

/** Sent after the test's messages: the channel keeps order, so all of them were read before it. */
const END = "m18 end of the test's messages";

/** Sends `messages` from a child process; resolves once `receive` was handed each of them. */
export async function overIpc(receive: (m: unknown) => void, messages: readonly unknown[]): Promise<void> {
  // The messages go in on stdin (a 1 MiB field is too long for argv), out over IPC; the channel
  // closes once the last one is written (closed at once, it would lose what is still queued).
  const script = `let s = ""; process.stdin.setEncoding("utf8").on("data", (d) => (s += d)).on("end", () => { const ms = JSON.parse(s); ms.forEach((m, i) => process.send(m, i === ms.length - 1 ? () => process.disconnect() : undefined)); });`; // prettier-ignore
  const child = spawn(process.execPath, ["-e", script], { stdio: ["pipe", "inherit", "inherit", "ipc"] });
  child.stdin?.end(JSON.stringify([...messages, END]));
  try {
    await new Promise<void>((resolve, reject) => {
      child.on("message", (m: unknown) => (m === END ? resolve() : receive(m)));
      // The channel closes once everything in it was read (the exit may come first, mid-read).
      child.once("disconnect", () => reject(new Error("the channel closed before the last message")));
      child.once("error", reject);
    });
  } finally {
    child.kill("SIGKILL");
  }
}
