/**
 * The Kubernetes API as the watcher reads it: list (paginated, bounded) and
 * watch, authenticated by a KubeConfig from `@kubernetes/client-node`.
 *
 *   KubeConfig --applyToHTTPSOptions--> GET <path>?limit=500&continue=...   (list, each page <= LIST_PAGE_MAX_BYTES)
 *              --Watch.watch---------> GET <path>?watch=true&resourceVersion=R&allowWatchBookmarks=true
 *
 * The list is ours (node:http/https with the KubeConfig's agent, CA, client
 * certificate and token), so that a page's size is bounded; the watch stream
 * is client-node's Watch. Objects stay plain JSON: they are validated by the
 * translation (translate.ts) and the agent's controllers, never trusted.
 */
import http from "node:http";
import https from "node:https";
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { MembraneError } from "../errors.js";

/** A Kubernetes object as JSON (validated by whoever reads a field). */
export type KObject = Record<string, unknown>;

/** Bytes of one list page; objects beyond are a broken or hostile server. */
export const LIST_PAGE_MAX_BYTES = 64 * 2 ** 20;
/** Items per list page (the apiserver's chunking, as client-go's reflector asks). */
export const LIST_PAGE_ITEMS = 500;

/** An HTTP answer other than 200; `status` 410 means Gone (the resourceVersion or continue token expired). */
export class K8sHttpError extends MembraneError {
  constructor(
    readonly status: number,
    path: string,
    why: string,
  ) {
    super(
      "K8S_API_FAILED",
      `Cannot read ${path} from the Kubernetes API: HTTP ${status}${why ? ` (${why})` : ""}`,
    );
  }
}

export interface ListPage {
  readonly items: KObject[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

export type WatchCallback = (type: string, object: KObject) => void;

export interface K8sApi {
  listPage(path: string, continueToken: string | undefined): Promise<ListPage>;
  /** Starts a watch; `done` is called once when it ends (err undefined: the server closed it). */
  watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    cb: WatchCallback,
    done: (err?: unknown) => void,
  ): Promise<AbortController>;
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

export class KubeApi implements K8sApi {
  private readonly watcher: Watch;

  constructor(private readonly kc: KubeConfig) {
    this.watcher = new Watch(kc);
  }

  async listPage(path: string, continueToken: string | undefined): Promise<ListPage> {
    const server = this.kc.getCurrentCluster()?.server ?? "";
    const url = new URL(server.replace(/\/+$/, "") + path);
    url.searchParams.set("limit", String(LIST_PAGE_ITEMS));
    if (continueToken !== undefined) url.searchParams.set("continue", continueToken);
    const opts: https.RequestOptions = { method: "GET", headers: { accept: "application/json" } };
    await this.kc.applyToHTTPSOptions(opts);
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

  watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    cb: WatchCallback,
    done: (err?: unknown) => void,
  ): Promise<AbortController> {
    return this.watcher.watch(
      path,
      { resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
      (type: string, obj: unknown) => {
        if (typeof obj === "object" && obj !== null) cb(type, obj as KObject);
      },
      (err: unknown) => done(err ?? undefined),
    );
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

/** The message of a Status object, shortened (it is the server's text). */
function statusMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    return typeof m === "string" ? m.slice(0, 200) : "";
  } catch {
    return "";
  }
}
