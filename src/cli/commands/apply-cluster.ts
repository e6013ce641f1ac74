/**
 * `membrane apply|delete --cluster-store etcd://HOST:PORT[,...]` (straight to
 * etcd, no agent) and `--wait` (every live node realized the change):
 *
 *   file --parsePolicies (whole, first)--> records as the agent writes them --txn--> cluster/policies/
 *        --wait: poll cluster/nodes/ + cluster/status/ until each realized the write's revision
 *
 * The same validation as through an agent: a rejected file writes nothing.
 * Unchanged policies (same canonical body) are not written.
 */
import { readFileSync } from "node:fs";
import { pino } from "pino";
import type { ApplyReport } from "../../agent/agent.js";
import { txnAllOrNone } from "../../agent/controllers/store-txn.js";
import { decodePolicy, encodePolicy, policyKey } from "../../agent/policy-store.js";
import { KEYS } from "../../agent/records.js";
import { CLUSTER } from "../../cluster/keys.js";
import { readRealized, waitRealized, type NodeRealized } from "../../cluster/realized.js";
import { ClusterResourceStore } from "../../cluster/resource-store.js";
import { MembraneError } from "../../errors.js";
import type { PolicyResource } from "../../policy/types.js";
import { EtcdStore } from "../../store/etcd.js";
import type { TxnOp } from "../../store/store.js";
import type { CliContext } from "../context.js";

export interface ClusterStoreOptions {
  readonly clusterStore?: string;
  readonly etcdCa?: string;
  readonly etcdCert?: string;
  readonly etcdKey?: string;
  readonly etcdUsername?: string;
  readonly etcdPasswordFile?: string;
}

/** `etcd://h1:2379,h2:2379` -> client URLs (https when a CA is given). */
export function etcdEndpoints(url: string, tls: boolean): string[] {
  const m = /^etcd:\/\/(.+)$/.exec(url);
  const hosts = m?.[1]?.split(",") ?? [];
  if (!m || hosts.some((h) => !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(h))) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use --cluster-store ${JSON.stringify(url)}: write etcd://HOST:PORT[,HOST:PORT...]`,
    );
  }
  return hosts.map((h) => `${tls ? "https" : "http"}://${h}`);
}

/** The user and password of `--etcd-username`/`--etcd-password-file` (both or neither); the password is never shown. */
function readAuth(o: ClusterStoreOptions): { username: string; password: string } | undefined {
  if ((o.etcdUsername === undefined) !== (o.etcdPasswordFile === undefined))
    throw new MembraneError(
      "CLI_USAGE",
      "Cannot use the cluster store: give --etcd-username and --etcd-password-file together",
    );
  if (o.etcdUsername === undefined || o.etcdPasswordFile === undefined) return undefined;
  let password: string;
  try {
    password = readFileSync(o.etcdPasswordFile, "utf8").trim();
  } catch (e) {
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot read --etcd-password-file ${o.etcdPasswordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { hint: "give the file `membrane cluster etcd-setup --admin` wrote (membrane-admin.password)" },
    );
  }
  if (password === "")
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot use --etcd-password-file ${o.etcdPasswordFile}: it is empty`,
    );
  return { username: o.etcdUsername, password };
}

export function openClusterStore(o: ClusterStoreOptions): EtcdStore {
  const tls = o.etcdCa !== undefined;
  const read = (f: string | undefined): Buffer | undefined => (f === undefined ? undefined : readFileSync(f));
  const ca = read(o.etcdCa);
  const cert = read(o.etcdCert);
  const key = read(o.etcdKey);
  const auth = readAuth(o);
  return new EtcdStore({
    endpoints: etcdEndpoints(o.clusterStore ?? "", tls),
    logger: pino({ level: "silent" }),
    ...(ca ? { tls: { ca, ...(cert ? { cert } : {}), ...(key ? { key } : {}) } } : {}),
    ...(auth ? { auth } : {}),
  });
}

/** Writes (or deletes) the policies in etcd as an agent would; the report has the revision to wait for. */
export async function applyToCluster(
  kv: EtcdStore,
  resources: readonly PolicyResource[],
  op: "apply" | "delete",
): Promise<ApplyReport> {
  const store = new ClusterResourceStore(kv, kv); // policies/... -> cluster/policies/..., lastWrite kept
  const statuses: {
    kind: string;
    namespace?: string;
    name: string;
    status: ApplyReport["policies"][number]["status"];
  }[] = [];
  const ops: TxnOp[] = [];
  const before = new Map<string, string>();
  let held = 0;
  for (const res of resources) {
    const key = KEYS.policies + policyKey(res.ref);
    const old = await kv.get(CLUSTER + key);
    if (old) before.set(key, old.value);
    const ref = {
      kind: res.ref.kind,
      ...(res.ref.namespace !== undefined ? { namespace: res.ref.namespace } : {}),
      name: res.ref.name,
    };
    if (op === "delete") {
      if (!old)
        throw new MembraneError(
          "POLICY_NOT_FOUND",
          `Cannot delete ${ref.kind} ${ref.namespace ? ref.namespace + "/" : ""}${ref.name}: not applied in the cluster`,
        );
      ops.push({ type: "delete", key });
      statuses.push({ ...ref, status: "deleted" });
      continue;
    }
    const enc = encodePolicy(res);
    const same = old !== undefined && decodePolicy(old.value)?.body === enc.body;
    statuses.push({ ...ref, status: old === undefined ? "created" : same ? "unchanged" : "updated" });
    if (same) held = Math.max(held, old.modRevision);
    else ops.push({ type: "put", key, value: enc.value });
  }
  const t0 = performance.now();
  if (ops.length > 0) {
    await txnAllOrNone({
      store,
      ops,
      before: (k) => before.get(k),
      undoFailed: () => undefined,
    });
  }
  return {
    revision: store.lastWrite || held,
    policies: statuses,
    endpointsChanged: 0,
    kernelOps: 0,
    enforcedMs: Math.round(performance.now() - t0),
    clusterRevision: Math.max(store.lastWrite, held),
  };
}

/** `--timeout 30s|500ms|2m` -> ms. */
export function parseTimeout(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
  if (!m)
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot read --timeout ${JSON.stringify(s)}: write e.g. 30s, 500ms or 2m`,
    );
  const n = Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "m" ? 60_000 : 1000);
  if (!(n > 0 && n <= 24 * 3600_000))
    throw new MembraneError("CLI_USAGE", `Cannot use --timeout ${s}: give more than 0 and at most 24h`);
  return n;
}

/** Waits until every live node realized `revision`; prints one line per node. */
export async function waitAndShow(
  ctx: CliContext,
  format: string,
  read: () => Promise<readonly NodeRealized[]>,
  revision: number | undefined,
  timeout: string,
): Promise<void> {
  if (revision === undefined) {
    throw new MembraneError(
      "CLI_USAGE",
      "Cannot wait: the agent is not in cluster mode (--wait needs --cluster-store on the agent or on this command)",
    );
  }
  const nodes = await waitRealized(read, revision, parseTimeout(timeout));
  if (format !== "table") return; // the report above is the whole answer in json / yaml
  ctx.out(
    `realized revision ${revision} on ${nodes.length} node${nodes.length === 1 ? "" : "s"}: ${nodes.map((n) => n.node).join(", ")}\n`,
  );
}

export { readRealized };
