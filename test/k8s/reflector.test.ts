/**
 * The reflector (list + watch of one resource) against the recorded
 * Kubernetes API (test/k8s/recorded-api.ts), through a real KubeConfig of
 * `@kubernetes/client-node`: resourceVersions, bookmarks, 410 Gone, paging,
 * backoff. No agent here (watcher-agent.test.ts drives a real one).
 */
import assert from "node:assert/strict";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import pino from "pino";
import { KubeApi, type KObject } from "../../src/k8s/api.js";
import { KubeCredentials } from "../../src/k8s/credentials.js";
import { backoffMs, Reflector, type ReflectorEvent } from "../../src/k8s/reflector.js";
import { WATCHED } from "../../src/k8s/resources.js";
import { k8sStatus } from "../../src/k8s/status.js";
import { LineReader, WATCH_LINE_MAX_BYTES } from "../../src/k8s/watch-stream.js";
import { RecordedApi } from "./recorded-api.js";
import { until } from "../support/until.js";

const CNP = "/apis/cilium.io/v2/ciliumnetworkpolicies";
const resource = WATCHED.find((r) => r.resource === "ciliumnetworkpolicies")!;
const cnp = (name: string, app = "a"): KObject => ({
  metadata: { name, namespace: "default" },
  spec: { endpointSelector: { matchLabels: { app } } },
});

interface Rig {
  readonly api: RecordedApi;
  readonly events: ReflectorEvent[];
  readonly refl: Reflector;
  /** The names the sink holds, as a consumer of replace/upsert/delete would. */
  readonly held: Set<string>;
  readonly kube: KubeApi;
}

async function withRig(
  opts: ConstructorParameters<typeof RecordedApi>[0],
  f: (r: Rig) => Promise<void>,
  before?: (api: RecordedApi) => void,
  rig: { tokenFile?: (dir: string) => Promise<string> } = {},
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "membrane-k8s-"));
  const api = new RecordedApi(opts);
  await api.start();
  const tokenFile = rig.tokenFile ? await rig.tokenFile(dir) : undefined;
  const events: ReflectorEvent[] = [];
  const held = new Set<string>();
  const name = (o: KObject): string => String((o["metadata"] as { name: string }).name);
  before?.(api);
  await api.writeKubeconfig(join(dir, "kubeconfig"), tokenFile !== undefined ? { tokenFile } : {});
  const kube = new KubeApi(new KubeCredentials(join(dir, "kubeconfig")));
  const refl = new Reflector({
    api: kube,
    resource,
    logger: pino({ level: "silent" }),
    resyncMs: 0,
    backoff: { initialMs: 20, maxMs: 200 },
    handle: async (ev) => {
      events.push(ev);
      if (ev.type === "replace") {
        held.clear();
        for (const o of ev.items) held.add(name(o));
      } else if (ev.type === "upsert") held.add(name(ev.object));
      else held.delete(name(ev.object));
    },
  });
  try {
    refl.start();
    await f({ api, events, refl, held, kube });
  } finally {
    await refl.stop();
    await api.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

describe("Kubernetes reflector (recorded Kubernetes API, no apiserver)", () => {
  test("lists, then watches from the list's resourceVersion with bookmarks, with the kubeconfig's token", async () => {
    await withRig(
      { goneAs: "event", token: "s3cret" },
      async ({ api, held, refl }) => {
        await refl.synced;
        assert.deepEqual([...held], ["one"]);
        await until("the watch", () => api.openWatches(CNP) === 1);
        const w = api.requests.find((r) => r.watch);
        assert.equal(w?.resourceVersion, String(refl.stats.resourceVersion));
        assert.ok(api.requests.every((r) => r.authorization === "Bearer s3cret"));
        api.put(CNP, cnp("two"));
        api.remove(CNP, "default", "one");
        await until("ADDED two, DELETED one", () => held.has("two") && !held.has("one"));
      },
      (api) => api.put(CNP, cnp("one")),
    );
  });

  test("a BOOKMARK moves the resourceVersion: the next watch starts from it", async () => {
    await withRig({ goneAs: "event" }, async ({ api, refl }) => {
      await refl.synced;
      await until("the watch", () => api.openWatches(CNP) === 1);
      api.put("/api/v1/pods", { metadata: { name: "p", namespace: "default" } }); // moves the global version
      const rv = api.bookmark(CNP);
      await until("the bookmark", () => refl.stats.bookmarks === 1);
      api.dropStreams();
      await until("a second watch", () => api.requests.filter((r) => r.watch).length >= 2);
      assert.equal(api.requests.filter((r) => r.watch).at(-1)?.resourceVersion, String(rv));
      assert.equal(refl.stats.lists, 1, "no relist: the stream was only cut");
    });
  });

  for (const goneAs of ["event", "http"] as const) {
    test(`410 Gone (${goneAs === "event" ? "ERROR event with a Status code 410" : "HTTP 410 on a too-old resourceVersion"}) -> list again; what vanished meanwhile is removed`, async () => {
      await withRig(
        { goneAs },
        async ({ api, held, refl, events }) => {
          await refl.synced;
          await until("the watch", () => api.openWatches(CNP) === 1);
          // Meanwhile (in history the watcher never sees): "one" goes, "three" comes.
          api.silently(CNP, (objs) => {
            objs.delete("default/one");
            objs.set("default/three", {
              ...cnp("three"),
              metadata: { name: "three", namespace: "default", resourceVersion: "1" },
            } as never);
          });
          api.compact();
          if (goneAs === "event") api.expireWatches();
          else api.dropStreams();
          await until("the relist", () => refl.stats.lists === 2);
          assert.deepEqual([...held].sort(), ["three", "two"]);
          assert.equal(refl.stats.gone, 1);
          assert.equal(events.filter((e) => e.type === "replace").length, 2);
        },
        (api) => {
          api.put(CNP, cnp("one"));
          api.put(CNP, cnp("two"));
        },
      );
    });
  }

  test("a list comes in pages (limit/continue), handed over whole", async () => {
    await withRig(
      { goneAs: "event", pageSize: 2 },
      async ({ api, held, refl }) => {
        await refl.synced;
        assert.equal(held.size, 5);
        assert.equal(api.requests.filter((r) => !r.watch && r.continueToken !== undefined).length, 2);
      },
      (api) => {
        for (const n of ["a", "b", "c", "d", "e"]) api.put(CNP, cnp(n));
      },
    );
  });

  test("errors are retried with backoff: refused lists, then a dropped stream; nothing is lost", async () => {
    await withRig(
      { goneAs: "event" },
      async () => undefined,
      (api) => api.refuse(3),
    );
    await withRig(
      { goneAs: "event" },
      async ({ api, held, refl }) => {
        await refl.synced;
        assert.equal(refl.stats.failures, 3, "three refused lists, each followed by a backoff");
        await until("the watch", () => api.openWatches(CNP) === 1);
        api.refuse(2);
        api.dropStreams();
        api.put(CNP, cnp("later"));
        await until("the event after reconnecting", () => held.has("later"));
        assert.ok(refl.stats.failures >= 5, `failures ${refl.stats.failures}`);
        assert.equal(refl.stats.lists, 1, "reconnected from its resourceVersion, no relist");
      },
      (api) => api.refuse(3),
    );
  });

  test("a resync lists again and hands the whole set over; nothing vanished, nothing removed", async () => {
    await withRig(
      { goneAs: "event" },
      async ({ api, held, refl, events }) => {
        await refl.synced;
        await until("the watch", () => api.openWatches(CNP) === 1);
        refl.relist();
        await until("the second list", () => refl.stats.lists === 2);
        assert.deepEqual([...held], ["one"]);
        assert.equal(events.filter((e) => e.type === "replace").length, 2);
      },
      (api) => api.put(CNP, cnp("one")),
    );
  });

  test("backoff doubles from its start and stops at its cap", () => {
    const b = { initialMs: 100, maxMs: 1000 };
    const within = (n: number, base: number): boolean => n <= base && n >= base * 0.8;
    assert.ok(within(backoffMs(b, 1), 100));
    assert.ok(within(backoffMs(b, 2), 200));
    assert.ok(within(backoffMs(b, 4), 800));
    assert.ok(within(backoffMs(b, 9), 1000));
    assert.ok(within(backoffMs(b, 1e6), 1000));
  });

  test("a watch line without end is cut at its bound: the stream fails, and the reflector reconnects with backoff and goes on", async () => {
    await withRig(
      { goneAs: "event" },
      async ({ api, held, refl }) => {
        await refl.synced;
        await until("the watch", () => api.openWatches(CNP) === 1);
        const sent = 4 * WATCH_LINE_MAX_BYTES;
        const [r] = await api.endlessLine(CNP, sent);
        assert.equal(r?.closedByClient, true, "the client closed the stream");
        assert.ok((r?.written ?? sent) < sent, `cut after ${r?.written} of ${sent} bytes`);
        await until("the failure counted", () => refl.stats.failures >= 1);
        assert.match(refl.stats.lastError?.message ?? "", /line is longer than 16777216 bytes/);
        api.put(CNP, cnp("after"));
        await until("the event after reconnecting", () => held.has("after"));
        assert.equal(refl.stats.lists, 1, "reconnected from its resourceVersion");
      },
      (api) => api.put(CNP, cnp("one")),
    );
  });

  test("a watch line is read across chunks; one byte over the bound is refused", () => {
    const r = new LineReader(8);
    assert.deepEqual(
      r.push(Buffer.from('{"a":1}\n{"b"')).map((b) => b.toString()),
      ['{"a":1}'],
    );
    assert.deepEqual(
      r.push(Buffer.from(":22}\n\n")).map((b) => b.toString()),
      ['{"b":22}'],
    );
    assert.throws(() => r.push(Buffer.from("123456789")), /longer than 8 bytes/);
    assert.deepEqual(
      r.push(Buffer.from("12345678\n")).map((b) => b.toString()),
      ["12345678"],
    );
  });

  test("a rotated token file is read again for the next request; an expired token (401) shows in status, and is read again after backoff", async () => {
    let file = "";
    const rotate = async (token: string): Promise<void> => {
      // As the kubelet does: the new file is written beside, then swapped in.
      await writeFile(`${file}.new`, token);
      await rename(`${file}.new`, file);
    };
    await withRig(
      { goneAs: "event", token: "old" },
      async ({ api, held, refl, kube }) => {
        await refl.synced;
        await until("the watch", () => api.openWatches(CNP) === 1);
        api.acceptToken("new");
        await rotate("new");
        api.dropStreams();
        api.put(CNP, cnp("two"));
        await until("the event with the rotated token", () => held.has("two"));
        assert.equal(api.requests.at(-1)?.authorization, "Bearer new");
        // The server stops accepting the token before the file changes: 401, shown, retried with backoff.
        api.acceptToken("newer");
        api.dropStreams();
        await until("the refused request", () => /HTTP 401/.test(refl.stats.lastError?.message ?? ""));
        const st = k8sStatus({ ciliumnetworkpolicies: refl.stats }, kube.credentialsStatus());
        assert.equal(st.state, "failing");
        assert.deepEqual(st.failing, ["ciliumnetworkpolicies"]);
        assert.match(st.lastError?.message ?? "", /HTTP 401/);
        assert.match(st.credentials?.lastError?.message ?? "", /HTTP 401/);
        assert.ok(!JSON.stringify(st).includes("newer") && !JSON.stringify(st).includes('"new"'), "no token");
        await rotate("newer");
        api.put(CNP, cnp("three"));
        await until("the event once the file holds the new token", () => held.has("three"));
        assert.equal(k8sStatus({ c: refl.stats }, kube.credentialsStatus()).state, "ok");
        assert.ok((kube.credentialsStatus().reloads ?? 0) >= 2);
      },
      (api) => api.put(CNP, cnp("one")),
      {
        tokenFile: async (dir) => {
          file = join(dir, "token");
          await writeFile(file, "old\n");
          return file;
        },
      },
    );
  });
});
