/**
 * The Kubernetes API as the watcher reads it: list (paginated, bounded) and
 * watch (bounded lines), authenticated by a KubeConfig from
 * `@kubernetes/client-node` with credentials kept fresh (credentials.ts).
 *
 *   KubeCredentials --apply--> GET <path>?limit=500&continue=...   (list, each page <= LIST_PAGE_MAX_BYTES)
 *                   --apply--> GET <path>?watch=true&resourceVersion=R&allowWatchBookmarks=true
 *                              (watch-stream.ts: each line <= WATCH_LINE_MAX_BYTES)
 *   HTTP 401 on either --> credentials read again before the next request
 *
 * Both requests are ours (node:http/https with the KubeConfig's agent, CA,
 * client certificate and token), so that what a server sends is bounded.
 * Objects stay plain JSON: they are validated by the translation
 * (translate.ts) and the agent's controllers, never trusted.
 */
import http from "node:http";
import https from "node:https";
import { MembraneError } from "../errors.js";
import type { CredentialsStatus, KubeCredentials } from "./credentials.js";
import { K8sHttpError, statusMessage } from "./http-error.js";
import { openWatch, WATCH_LINE_MAX_BYTES, WATCH_PENDING_MAX_BYTES } from "./watch-stream.js";

export { K8sHttpError } from "./http-error.js";

/** A Kubernetes object as JSON (validated by whoever reads a field). */
export type KObject = Record<string, unknown>;

/** Bytes of one list page; objects beyond are a broken or hostile server. */
export const LIST_PAGE_MAX_BYTES = 64 * 2 ** 20;
/** Items per list page (the apiserver's chunking, as client-go's reflector asks). */
export const LIST_PAGE_ITEMS = 500;

export interface ListPage {
  readonly items: KObject[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

/** One watch event; a returned promise counts its bytes as pending until it settles (backpressure). */
export type WatchCallback = (type: string, object: KObject) => Promise<void> | void;

export interface K8sApi {
  listPage(path: string, continueToken: string | undefined): Promise<ListPage>;
  /** Starts a watch; `done` is called once when it ends (err undefined: the server closed it). */
  watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    cb: WatchCallback,
    done: (err?: unknown) => void,
    opened?: () => void,
  ): Promise<AbortController>;
  /** Told of an HTTP 401 (an expired or rotated token): credentials are read again before the next request. */
  unauthorized?(why: string): void;
  credentialsStatus?(): CredentialsStatus;
}

export interface KubeApiLimits {
  readonly maxLineBytes?: number;
  readonly maxPendingBytes?: number;
}

export class KubeApi implements K8sApi {
  constructor(
    private readonly creds: KubeCredentials,
    private readonly limits: KubeApiLimits = {},
  ) {}

  unauthorized(why: string): void {
    this.creds.invalidate(why);
  }

  credentialsStatus(): CredentialsStatus {
    return this.creds.status();
  }

  private url(path: string): URL {
    return new URL(this.creds.server.replace(/\/+$/, "") + path);
  }

  async listPage(path: string, continueToken: string | undefined): Promise<ListPage> {
    const url = this.url(path);
    url.searchParams.set("limit", String(LIST_PAGE_ITEMS));
    if (continueToken !== undefined) url.searchParams.set("continue", continueToken);
    const opts: https.RequestOptions = { method: "GET", headers: { accept: "application/json" } };
    await this.creds.apply(opts);
    const body = await getBounded(url, opts, path);
    let doc: unknown;
    try {
      doc = JSON.parse(body);
    } catch {
      throw new MembraneError("K8S_API_FAILED", `Cannot read the list of ${path}: the answer is not JSON`);
    }
    const d = doc as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } };
    if (!Array.isArray(d.items) || typeof d.metadata?.resourceVersion !== "string") {
      throw new MembraneError(
        "K8S_API_FAILED",
        `Cannot read the list of ${path}: no items or no metadata.resourceVersion`,
      );
    }
    const items = d.items.filter(
      (i): i is KObject => typeof i === "object" && i !== null && !Array.isArray(i),
    );
    const cont = d.metadata.continue;
    return {
      items,
      resourceVersion: d.metadata.resourceVersion,
      continueToken: typeof cont === "string" && cont !== "" ? cont : undefined,
    };
  }

  async watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    cb: WatchCallback,
    done: (err?: unknown) => void,
    opened?: () => void,
  ): Promise<AbortController> {
    const url = this.url(path);
    url.searchParams.set("watch", "true");
    url.searchParams.set("resourceVersion", resourceVersion);
    url.searchParams.set("allowWatchBookmarks", "true");
    url.searchParams.set("timeoutSeconds", String(timeoutSeconds));
    const opts: https.RequestOptions = { headers: { accept: "application/json" } };
    await this.creds.apply(opts);
    return openWatch({
      url,
      opts,
      path,
      maxLineBytes: this.limits.maxLineBytes ?? WATCH_LINE_MAX_BYTES,
      maxPendingBytes: this.limits.maxPendingBytes ?? WATCH_PENDING_MAX_BYTES,
      // The server ends the stream after timeoutSeconds and sends bookmarks meanwhile: silence past that is a dead peer.
      idleMs: (timeoutSeconds + 60) * 1000,
      cb,
      done,
      ...(opened ? { opened } : {}),
    });
  }
}

function getBounded(url: URL, opts: https.RequestOptions, path: string): Promise<string> {
  const mod = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      let n = 0;
      res.on("data", (c: Buffer) => {
        n += c.length;
        if (n > LIST_PAGE_MAX_BYTES) {
          req.destroy();
          reject(
            new MembraneError(
              "INPUT_LIMIT_EXCEEDED",
              `Cannot read the list of ${path}: a page is larger than ${LIST_PAGE_MAX_BYTES} bytes`,
            ),
          );
          return;
        }
        chunks.push(c);
      });
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode === 200) resolve(text);
        else reject(new K8sHttpError(res.statusCode ?? 0, path, statusMessage(text)));
      });
      res.on("error", reject);
    });
    req.setTimeout(60_000, () =>
      req.destroy(new MembraneError("K8S_API_FAILED", `Cannot list ${path}: no answer in 60 s`)),
    );
    req.on("error", (e) =>
      reject(
        e instanceof MembraneError
          ? e
          : new MembraneError("K8S_API_FAILED", `Cannot list ${path}: ${e.message}`, { cause: e }),
      ),
    );
    req.end();
  });
}
