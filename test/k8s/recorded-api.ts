/**
 * A recorded Kubernetes API for tests (no apiserver can run here): an HTTPS
 * server (a self-signed certificate for 127.0.0.1, made by openssl at start,
 * given to the client as the kubeconfig's certificate-authority-data) serving list and watch of collections the way the Kubernetes API
 * documents them ("Efficient detection of changes", API concepts):
 *
 *   GET /api/v1/pods?limit=N[&continue=T]   -> {"kind":"PodList","metadata":{"resourceVersion":"R","continue":T'},"items":[...]}
 *        (items of built-in kinds carry no apiVersion/kind, as the API server sends them)
 *   GET /api/v1/pods?watch=true&resourceVersion=R&allowWatchBookmarks=true
 *        -> 200, a stream of {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}} lines:
 *           every change after R, then new ones as they happen
 *   R older than the compacted history -> HTTP 410 with a Status (goneAs "http")
 *                                      or 200 + an ERROR event with a Status code 410 (goneAs "event")
 *
 * One resourceVersion counter for the whole server, as etcd's revision.
 * The test drives it: add/modify/remove objects, bookmark(), compact(),
 * expireWatches() (ERROR 410 on open streams), dropStreams() (sockets cut),
 * refuse(n) (the next n requests get HTTP 500), acceptToken(t) (the bearer
 * token it accepts from now on: a rotation, or the old token expiring),
 * endlessLine(path, n) (a broken or hostile server: one line without end on
 * every open watch of path). Every request is recorded.
 */
import { execFileSync } from "node:child_process";
import type http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

type Obj = Record<string, unknown> & { metadata: Record<string, unknown> };

interface Collection {
  readonly apiVersion: string;
  readonly kind: string;
  readonly builtin: boolean;
  readonly objects: Map<string, Obj>;
  readonly history: { rv: number; type: string; object: Obj }[];
  readonly watchers: Set<Watcher>;
}

interface Watcher {
  readonly res: http.ServerResponse;
  readonly bookmarks: boolean;
}

export interface RecordedRequest {
  readonly path: string;
  readonly watch: boolean;
  readonly resourceVersion: string | undefined;
  readonly continueToken: string | undefined;
  readonly authorization: string | undefined;
}

const KINDS: Record<string, { apiVersion: string; kind: string }> = {
  "/api/v1/namespaces": { apiVersion: "v1", kind: "Namespace" },
  "/api/v1/nodes": { apiVersion: "v1", kind: "Node" },
  "/api/v1/pods": { apiVersion: "v1", kind: "Pod" },
  "/api/v1/services": { apiVersion: "v1", kind: "Service" },
  "/apis/discovery.k8s.io/v1/endpointslices": { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice" },
  "/apis/networking.k8s.io/v1/networkpolicies": { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy" },
  "/apis/cilium.io/v2/ciliumnetworkpolicies": { apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy" },
  "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies": {
    apiVersion: "cilium.io/v2",
    kind: "CiliumClusterwideNetworkPolicy",
  },
};

export class RecordedApi {
  readonly requests: RecordedRequest[] = [];
  private rv = 1000;
  /** Changes at or below this resourceVersion are forgotten (compacted). */
  private compacted = 0;
  private refusals = 0;
  private readonly sockets = new Set<Socket>();
  private readonly collections = new Map<string, Collection>();
  private server: https.Server | undefined;
  private cert = "";
  /** The bearer token accepted (undefined: any). */
  private token: string | undefined;

  constructor(
    readonly opts: { goneAs: "http" | "event"; pageSize?: number; token?: string } = { goneAs: "event" },
  ) {
    this.token = opts.token;
    for (const [path, k] of Object.entries(KINDS)) {
      this.collections.set(path, {
        ...k,
        builtin: !k.apiVersion.startsWith("cilium.io"),
        objects: new Map(),
        history: [],
        watchers: new Set(),
      });
    }
  }

  get url(): string {
    const a = this.server?.address() as AddressInfo;
    return `https://127.0.0.1:${a.port}`;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  async start(): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), "membrane-recorded-api-"));
    try {
      execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
          .concat(["-subj", "/CN=recorded-apiserver", "-addext", "subjectAltName=IP:127.0.0.1"])
          .concat(["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")]),
        { stdio: "ignore" },
      );
      this.cert = await readFile(join(dir, "cert.pem"), "utf8");
      const key = await readFile(join(dir, "key.pem"), "utf8");
      this.server = https.createServer({ cert: this.cert, key }, (req, res) => this.serve(req, res));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    this.server.on("secureConnection", (s: Socket) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** From now on only `token` is accepted (HTTP 401 for any other, as for an expired one). */
  acceptToken(token: string): void {
    this.token = token;
  }

  /**
   * Writes one line without end (no newline) on every open watch of `path`, in 64 KiB chunks, until
   * `maxBytes` were written to each or the client closed the stream. Resolves with what happened.
   */
  async endlessLine(path: string, maxBytes: number): Promise<{ written: number; closedByClient: boolean }[]> {
    const chunk = Buffer.alloc(64 * 1024, "a");
    const pump = async (w: Watcher): Promise<{ written: number; closedByClient: boolean }> => {
      let written = 0;
      w.res.write('{"type":"ADDED","object":{"metadata":{"name":"');
      while (written < maxBytes) {
        if (w.res.destroyed || w.res.socket?.destroyed !== false) return { written, closedByClient: true };
        written += chunk.length;
        if (!w.res.write(chunk)) {
          const closed = await new Promise<boolean>((r) => {
            const t = setInterval(() => {
              if (w.res.destroyed || w.res.socket?.destroyed !== false) {
                clearInterval(t);
                r(true);
              }
            }, 20);
            w.res.once("drain", () => {
              clearInterval(t);
              r(false);
            });
          });
          if (closed) return { written, closedByClient: true };
        }
      }
      return { written, closedByClient: false };
    };
    return Promise.all([...this.coll(path).watchers].map(pump));
  }

  /** A kubeconfig naming this server, with a bearer token (or a token file, as a projected service-account token). */
  async writeKubeconfig(file: string, o: { tokenFile?: string } = {}): Promise<void> {
    await writeFile(
      file,
      `apiVersion: v1
kind: Config
clusters:
- name: recorded
  cluster: {server: "${this.url}", certificate-authority-data: "${Buffer.from(this.cert).toString("base64")}"}
users:
- name: membrane
  user: {${o.tokenFile !== undefined ? `tokenFile: "${o.tokenFile}"` : `token: "${this.opts.token ?? "recorded-token"}"`}}
contexts:
- name: recorded
  context: {cluster: recorded, user: membrane}
current-context: recorded
`,
    );
  }

  private coll(path: string): Collection {
    const c = this.collections.get(path);
    if (!c) throw new Error(`no collection ${path}`);
    return c;
  }

  private change(path: string, type: "ADDED" | "MODIFIED" | "DELETED", obj: Obj): number {
    const c = this.coll(path);
    const rv = ++this.rv;
    const meta = obj.metadata;
    const key = `${String(meta["namespace"] ?? "")}/${String(meta["name"])}`;
    const stored: Obj = {
      apiVersion: c.apiVersion,
      kind: c.kind,
      ...obj,
      metadata: { ...meta, resourceVersion: String(rv) },
    };
    if (type === "DELETED") c.objects.delete(key);
    else c.objects.set(key, stored);
    c.history.push({ rv, type, object: stored });
    for (const w of c.watchers) w.res.write(JSON.stringify({ type, object: stored }) + "\n");
    return rv;
  }

  /** ADDED, or MODIFIED when an object of that namespace/name exists. */
  put(path: string, obj: Record<string, unknown>): number {
    const meta = (obj["metadata"] ?? {}) as Record<string, unknown>;
    const key = `${String(meta["namespace"] ?? "")}/${String(meta["name"])}`;
    return this.change(path, this.coll(path).objects.has(key) ? "MODIFIED" : "ADDED", obj as Obj);
  }

  remove(path: string, namespace: string, name: string): number {
    const obj = this.coll(path).objects.get(`${namespace}/${name}`);
    if (!obj) throw new Error(`no ${namespace}/${name} in ${path}`);
    return this.change(path, "DELETED", obj);
  }

  /** Changes the store without any watcher seeing it (as if they happened during a compacted gap). */
  silently(path: string, f: (objects: Map<string, Obj>) => void): void {
    f(this.coll(path).objects);
    this.rv++;
  }

  /** A BOOKMARK with the current resourceVersion on every open watch of `path` that asked for bookmarks. */
  bookmark(path: string): number {
    const c = this.coll(path);
    for (const w of c.watchers) {
      if (!w.bookmarks) continue;
      w.res.write(
        JSON.stringify({
          type: "BOOKMARK",
          object: { kind: c.kind, apiVersion: c.apiVersion, metadata: { resourceVersion: String(this.rv) } },
        }) + "\n",
      );
    }
    return this.rv;
  }

  /** Forgets history up to now: a watch from an older resourceVersion is answered 410 Gone. */
  compact(): void {
    this.compacted = this.rv;
    for (const c of this.collections.values()) c.history.length = 0;
  }

  /** Sends ERROR 410 on every open watch and ends it (as the API server does when a watch falls behind). */
  expireWatches(): void {
    for (const c of this.collections.values()) {
      for (const w of c.watchers) {
        w.res.end(JSON.stringify({ type: "ERROR", object: gone("too old resource version") }) + "\n");
      }
      c.watchers.clear();
    }
  }

  /** Cuts every open connection (a crashed API server or a dropped network path). */
  dropStreams(): void {
    for (const c of this.collections.values()) c.watchers.clear();
    for (const s of this.sockets) s.destroy();
  }

  /** The next `n` requests are answered HTTP 500. */
  refuse(n: number): void {
    this.refusals = n;
  }

  openWatches(path: string): number {
    return this.coll(path).watchers.size;
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const watch = url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1";
    const rvParam = url.searchParams.get("resourceVersion") ?? undefined;
    const cont = url.searchParams.get("continue") ?? undefined;
    this.requests.push({
      path: url.pathname,
      watch,
      resourceVersion: rvParam,
      continueToken: cont,
      authorization: req.headers.authorization,
    });
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (this.refusals > 0) {
      this.refusals--;
      send(500, status(500, "InternalError", "recorded: refused"));
      return;
    }
    if (this.token !== undefined && req.headers.authorization !== `Bearer ${this.token}`) {
      send(401, status(401, "Unauthorized", "Unauthorized"));
      return;
    }
    const c = this.collections.get(url.pathname);
    if (!c || req.method !== "GET") {
      send(404, status(404, "NotFound", `the server could not find the requested resource`));
      return;
    }
    if (!watch) return this.list(c, url, res, send);
    const from = Number(rvParam ?? "0");
    if (from < this.compacted) {
      if (this.opts.goneAs === "http") {
        send(410, gone(`too old resource version: ${from} (${this.compacted})`));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          type: "ERROR",
          object: gone(`too old resource version: ${from} (${this.compacted})`),
        }) + "\n",
      );
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    res.flushHeaders(); // as the API server: the stream is open before the first event
    for (const h of c.history)
      if (h.rv > from) res.write(JSON.stringify({ type: h.type, object: h.object }) + "\n");
    const w: Watcher = { res, bookmarks: url.searchParams.get("allowWatchBookmarks") === "true" };
    c.watchers.add(w);
    res.on("close", () => c.watchers.delete(w));
  }

  private list(
    c: Collection,
    url: URL,
    res: http.ServerResponse,
    send: (code: number, body: unknown) => void,
  ): void {
    const limit = Math.min(
      Number(url.searchParams.get("limit") ?? "0") || Infinity,
      this.opts.pageSize ?? Infinity,
    );
    const cont = url.searchParams.get("continue");
    let offset = 0;
    let at = this.rv;
    if (cont) {
      const [o, r] = Buffer.from(cont, "base64").toString().split(":").map(Number);
      offset = o ?? 0;
      at = r ?? this.rv;
      if (at < this.compacted) {
        send(410, gone("The provided continue parameter is too old"));
        return;
      }
    }
    const all = [...c.objects.values()].sort((a, b) =>
      String(a.metadata["name"]).localeCompare(String(b.metadata["name"])),
    );
    const page = all.slice(offset, offset + limit);
    const next =
      offset + page.length < all.length
        ? Buffer.from(`${offset + page.length}:${at}`).toString("base64")
        : undefined;
    const items = page.map((o) => {
      if (!c.builtin) return o;
      const { apiVersion: _a, kind: _k, ...rest } = o;
      return rest;
    });
    void res;
    send(200, {
      kind: `${c.kind}List`,
      apiVersion: c.apiVersion,
      metadata: { resourceVersion: String(at), ...(next ? { continue: next } : {}) },
      items,
    });
  }
}

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
}

function gone(message: string): Record<string, unknown> {
  return status(410, "Expired", message);
}
