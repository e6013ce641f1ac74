/**
 * What every command gets from the CLI frame: where to write, the exit code
 * to finish with, and the global options.
 */
export interface CliContext {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Membrane's version (package.json). */
  readonly version: string;
  /** The process exit code once the command is done (0 unless a command sets it). */
  exitCode: number;
}

export type OutputFormat = "text" | "json";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["text", "json"];

/** Options every command inherits from `membrane`. */
export interface GlobalOptions {
  readonly debug?: boolean;
}
