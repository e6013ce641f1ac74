/**
 * A real etcd under least privilege for tests, one way for every file: authentication on, the
 * users and roles of the real etcdSetup (cluster/etcd-setup.ts), fixed test passwords.
 *
 *   startAuthEtcd({ nodes: ["n1", "n2"] })   etcd (temp dir, free port) + etcdSetup(nodes, admin, enableAuth)
 *     .node("n1")   a store as membrane-node-n1     .admin()   a store as membrane-admin
 *     .root()       etcd's root (an Etcd3 client: roles, raw keys; close it)
 *     .stop()       closes the stores it opened, stops etcd
 *
 * `before` runs as root while auth is still off (keys an older version left, before auth was on).
 */
import { Etcd3 } from "etcd3";
import { ADMIN_USER, etcdSetup, nodeUser } from "../../src/cluster/etcd-setup.js";
import { startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import type { EtcdStore } from "../../src/store/etcd.js";

export const ROOT_PASSWORD = "pw-root";
export const ADMIN_PASSWORD = "pw-adm";
export const nodePassword = (node: string): string => `pw-${node}`;

/** A node's credentials as an agent is given them (AgentOptions.cluster.auth, EtcdStore's auth). */
export const nodeAuth = (node: string): { username: string; password: string } => ({
  username: nodeUser(node),
  password: nodePassword(node),
});
export const ADMIN_AUTH = { username: ADMIN_USER, password: ADMIN_PASSWORD } as const;

export interface AuthEtcd {
  readonly etcd: EtcdHandle;
  /** What etcdSetup said it did (users made, then "root" and "auth enabled"). */
  readonly done: readonly string[];
  /** A store as node `name` (its role membrane-node-<name>); closed by stop(). */
  node(name: string, prefix?: string): EtcdStore;
  /** A store as membrane-admin; closed by stop(). */
  admin(prefix?: string): EtcdStore;
  /** etcd's root user: close it after use. */
  root(): Etcd3;
  stop(): Promise<void>;
}

export async function startAuthEtcd(o: {
  readonly nodes: readonly string[];
  /** The store prefix the roles are made for (default "membrane/"). */
  readonly prefix?: string;
  readonly before?: (root: Etcd3) => Promise<unknown>;
}): Promise<AuthEtcd> {
  const etcd = await startEtcd();
  const open: EtcdStore[] = [];
  let done: string[];
  try {
    const r = new Etcd3({ hosts: [etcd.endpoint] });
    try {
      await o.before?.(r);
      done = await etcdSetup(r, {
        nodes: o.nodes.map((name) => ({ name, password: nodePassword(name) })),
        admin: { password: ADMIN_PASSWORD },
        enableAuth: { rootPassword: ROOT_PASSWORD },
        ...(o.prefix !== undefined ? { prefix: o.prefix } : {}),
      });
    } finally {
      r.close();
    }
  } catch (e) {
    await etcd.stop();
    throw e;
  }
  const as = (auth: { username: string; password: string }, prefix = o.prefix): EtcdStore => {
    const s = etcd.store({ auth, ...(prefix !== undefined ? { prefix } : {}) });
    open.push(s);
    return s;
  };
  return {
    etcd,
    done,
    node: (name, prefix) => as(nodeAuth(name), prefix),
    admin: (prefix) => as(ADMIN_AUTH, prefix),
    root: () => new Etcd3({ hosts: [etcd.endpoint], auth: { username: "root", password: ROOT_PASSWORD } }),
    stop: async () => {
      for (const s of open.splice(0)) await s.close().catch(() => undefined);
      await etcd.stop();
    },
  };
}
