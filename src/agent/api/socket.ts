/**
 * The API socket's place on disk: a directory only the agent's user owns
 * (0700), no stale socket in the way, and never a live agent's socket taken
 * over.
 */
import { connect } from "node:net";
import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { MembraneError } from "../../errors.js";

export function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** Resolves true if something accepts connections on the unix socket `path`. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export function alreadyRunning(path: string): MembraneError {
  return new MembraneError(
    "AGENT_ALREADY_RUNNING",
    `Cannot serve the API at ${path}: another agent is answering there`,
    {
      hint: "stop the other agent first, or give this one another socket path",
    },
  );
}

/** Makes `path` ready to listen on: directory 0700 and ours, a stale socket removed, a live one refused. */
export async function prepareSocketPath(path: string, logger: Logger): Promise<void> {
  const dir = dirname(path);
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  // Only a directory we just made is set to 0700: chmod on an existing one (say /run) could break the host.
  if (created !== undefined) await chmod(dir, 0o700);
  const st = await lstat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new MembraneError(
      "CONFIG_INVALID",
      `Cannot serve the API at ${path}: ${dir} must be a directory owned by uid ${uid} that no one else may write to`,
      {
        hint: `another user could replace the socket there; use a directory like /run/membrane (created 0700 if missing)`,
      },
    );
  }
  const existing = await lstat(path).catch((e: unknown) => {
    if (errnoCode(e) === "ENOENT") return undefined;
    throw e;
  });
  if (existing) {
    if (!existing.isSocket()) {
      throw new MembraneError(
        "CONFIG_INVALID",
        `Cannot serve the API at ${path}: a file that is not a socket is in the way`,
        {
          hint: "remove it if it is not needed, or choose another socket path",
        },
      );
    }
    if (await socketIsLive(path)) throw alreadyRunning(path);
    logger.info({ socket: path }, "removing a stale API socket left by an agent that is gone");
    await unlink(path);
  }
}
