/**
 * The watcher's credentials, kept fresh. A projected service-account token
 * (the kubeconfig user's `tokenFile` or `token-file`, such as
 * /var/run/secrets/kubernetes.io/serviceaccount/token) is rotated by the
 * kubelet about every hour; client-node reads a `token-file` once, at load.
 *
 *   every request --> stat kubeconfig and token file --changed--> read again
 *   HTTP 401      --> invalidate(): the next request (after the reflector's
 *                     backoff) reads both again, whatever their stat says
 *   bearer token  --> the token file's content (trimmed, at most 64 KiB), else the kubeconfig's
 *
 * A kubeconfig that became unreadable keeps the last good one (and the
 * error shows in status); the token itself is never logged.
 */
import { readFileSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import type https from "node:https";
import { dirname, isAbsolute, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parse } from "yaml";
import { MembraneError } from "../errors.js";

const TOKEN_MAX_BYTES = 64 * 2 ** 10;

export interface CredentialsStatus {
  readonly kubeconfig: string;
  readonly tokenFile?: string;
  /** Times the kubeconfig or the token file was read again after the start. */
  readonly reloads: number;
  readonly lastError?: { readonly at: string; readonly message: string };
}

export class KubeCredentials {
  private kc: KubeConfig;
  private tokenFile: string | undefined;
  private kubeconfigSig = "";
  private tokenSig = "";
  private token: string | undefined;
  private stale = false;
  private reloads = 0;
  private lastError: { at: string; message: string } | undefined;

  constructor(readonly file: string) {
    this.kc = loadKubeConfig(file); // a bad kubeconfig at start is an error (the agent does not start)
    this.tokenFile = tokenFileOf(file, this.kc);
  }

  /** The cluster's server URL (of the kubeconfig as last read). */
  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? "";
  }

  get config(): KubeConfig {
    return this.kc;
  }

  /** After an HTTP 401: the next request reads the kubeconfig and the token file again. */
  invalidate(why: string): void {
    this.stale = true;
    this.lastError = { at: new Date().toISOString(), message: why };
  }

  status(): CredentialsStatus {
    return {
      kubeconfig: this.file,
      ...(this.tokenFile !== undefined ? { tokenFile: this.tokenFile } : {}),
      reloads: this.reloads,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** TLS and authentication for one request, from fresh credentials. */
  async apply(opts: https.RequestOptions): Promise<void> {
    await this.refresh();
    await this.kc.applyToHTTPSOptions(opts);
    if (this.token !== undefined) opts.headers = { ...opts.headers, authorization: `Bearer ${this.token}` };
  }

  private async refresh(): Promise<void> {
    const force = this.stale;
    this.stale = false;
    try {
      const sig = await sigOf(this.file);
      if (force || (this.kubeconfigSig !== "" && sig !== this.kubeconfigSig)) {
        const kc = loadKubeConfig(this.file);
        this.kc = kc;
        this.tokenFile = tokenFileOf(this.file, kc);
        this.reloads++;
      }
      this.kubeconfigSig = sig;
      if (this.tokenFile === undefined) {
        this.token = undefined;
        return;
      }
      const tsig = await sigOf(this.tokenFile);
      if (force || tsig !== this.tokenSig || this.token === undefined) {
        if (this.token !== undefined) this.reloads++;
        this.token = await readToken(this.tokenFile);
        this.tokenSig = tsig;
      }
    } catch (e) {
      // Keep what was last good; the request goes on with it (and a 401 brings us back here).
      this.stale = true;
      this.lastError = { at: new Date().toISOString(), message: e instanceof Error ? e.message : String(e) };
    }
  }
}

async function sigOf(file: string): Promise<string> {
  const s = await stat(file); // follows the symlinks kubelet swaps (..data) on rotation
  return `${s.ino}:${s.mtimeMs}:${s.size}`;
}

async function readToken(file: string): Promise<string> {
  const s = await stat(file);
  if (!s.isFile() || s.size > TOKEN_MAX_BYTES) {
    throw new MembraneError(
      "CONFIG_INVALID",
      `Cannot read token file ${file}: not a file of at most ${TOKEN_MAX_BYTES} bytes`,
    );
  }
  const t = (await readFile(file, "utf8")).trim();
  if (t === "" || /[\r\n\0]/.test(t))
    throw new MembraneError("CONFIG_INVALID", `Cannot use token file ${file}: it holds no single-line token`);
  return t;
}

/** Reads a kubeconfig file; a missing or unreadable one is a clear error naming the file. */
export function loadKubeConfig(file: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(file);
  } catch (e) {
    throw new MembraneError(
      "CONFIG_INVALID",
      `Cannot read kubeconfig ${file}: ${e instanceof Error ? e.message : String(e)}`,
      {
        hint: "Give --kubeconfig a kubeconfig file (kubectl config view --raw), or the service account's in-cluster one.",
      },
    );
  }
  if (!kc.getCurrentCluster()) {
    throw new MembraneError("CONFIG_INVALID", `Cannot use kubeconfig ${file}: it names no current cluster`, {
      hint: "Set current-context to a context whose cluster has a server.",
    });
  }
  return kc;
}

/** The current user's token file (`tokenFile` as kubectl writes it, or client-node's `token-file`), absolute. */
function tokenFileOf(file: string, kc: KubeConfig): string | undefined {
  const user = kc.getCurrentUser()?.name;
  if (user === undefined) return undefined;
  const doc = parse(readFileSync(file, "utf8")) as {
    users?: { name?: unknown; user?: Record<string, unknown> }[];
  } | null;
  const u = doc?.users?.find((x) => x.name === user)?.user;
  const f = u?.["tokenFile"] ?? u?.["token-file"];
  if (typeof f !== "string" || f === "") return undefined;
  return isAbsolute(f) ? f : join(dirname(file), f);
}
