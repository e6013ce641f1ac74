/** Runs the built CLI (`node bin/membrane.js ...`) from the repository root. */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** dist/test/cli/run-cli.js -> repository root. */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function cli(...args: string[]): CliRun {
  const r = spawnSync(process.execPath, [join(ROOT, "bin/membrane.js"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** cli() without blocking the event loop: for tests whose agent runs in the test's own process. */
export function cliAsync(...args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(ROOT, "bin/membrane.js"), ...args], {
      cwd: ROOT,
      timeout: 60_000,
    });
    let stdout = "";
    let stderr = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    c.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    c.on("error", reject);
    c.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Writes files into a fresh temporary directory and returns its path. */
export function tempFiles(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "membrane-cli-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** The last non-empty line of an output. */
export function lastLine(text: string): string {
  const lines = text.split("\n").filter((l) => l !== "");
  return lines[lines.length - 1] ?? "";
}
