/**
 * Least privilege in the cluster store (issue 11 item 7): etcd users and roles
 * so that a node's credentials write only the keys carrying its name (keys.ts).
 *
 *   role membrane-node-<node>   read      membrane/                 (everything, as readers need)
 *                               readwrite membrane/cluster/nodes/<node>, podcidrs/<node>, status/<node>
 *                               readwrite membrane/cluster/identities/<node>/, ipcache/<node>/  (prefixes)
 *                               readwrite membrane/cluster/lb/gateways/<node>/  (its Gateways' own addresses)
 *   role membrane-admin         read      membrane/
 *                               readwrite membrane/cluster/policies/, namespaces/, services/
 *                               readwrite membrane/cluster/lb/services/, lb/slices/, lb/alloc/
 *                                         (Services, EndpointSlices and their addresses and ports)
 *   user = role name (with TLS client certificates, the certificate's CN must be the user name)
 *
 * Services (LoadBalancer, NodePort, ClusterIP) are the cluster's, as Kubernetes' apiserver and
 * Cilium's LB-IPAM allocate them: `membrane apply --cluster-store` with the admin's credentials
 * writes them and reserves their addresses (cli/commands/apply-lb-cluster.ts); no node may, so a node can
 * neither take nor delete a Service's address. A node reserves its Gateways' addresses under its
 * own keys, unique against the Services' and other nodes' by the compares of its transaction
 * (lb/reservations.ts).
 *
 * Run with etcd's root credentials; idempotent (existing roles and users are
 * completed, not duplicated). `enableAuth` creates the root user first when
 * it is missing and turns authentication on.
 */
import { Etcd3, Range } from "etcd3";
import { MembraneError } from "../errors.js";
import { ALLOC_KEY, gatewayNodePrefix } from "../lb/reservations.js";
import {
  CLUSTER,
  CLUSTER_KEYS,
  identitiesPrefix,
  ipcachePrefix,
  nodeKey,
  podCidrKey,
  statusKey,
  validateNodeName,
} from "./keys.js";

export const nodeUser = (node: string): string => `membrane-node-${node}`;
export const ADMIN_USER = "membrane-admin";

/** An error caused by etcd's "permission denied": the user's role lacks a grant for what it wrote. */
export function deniedByRole(e: unknown): boolean {
  for (let c: unknown = e; c instanceof Error; c = c.cause)
    if (/permission denied/i.test(c.message)) return true;
  return false;
}

interface Grant {
  readonly permission: "Read" | "Write" | "Readwrite";
  readonly range: Range;
}

/** What role membrane-node-<node> may do (`prefix` = the store prefix, default "membrane/"). */
export function nodeGrants(node: string, prefix = "membrane/"): Grant[] {
  return [
    { permission: "Read", range: Range.prefix(prefix) },
    ...[nodeKey(node), podCidrKey(node), statusKey(node)].map((k): Grant => ({
      permission: "Readwrite",
      range: new Range(prefix + k),
    })),
    ...[identitiesPrefix(node), ipcachePrefix(node), CLUSTER + gatewayNodePrefix(validateNodeName(node))].map(
      (p): Grant => ({
        permission: "Readwrite",
        range: Range.prefix(prefix + p),
      }),
    ),
  ];
}

/** The Services' keys (cluster mode: controllers/lb.ts, lb-reserve.ts under cluster/), the admin's alone. */
const ADMIN_LB = ["lb/services/", "lb/slices/", ALLOC_KEY].map((k) => CLUSTER + k);

export function adminGrants(prefix = "membrane/"): Grant[] {
  return [
    { permission: "Read", range: Range.prefix(prefix) },
    ...[CLUSTER_KEYS.policies, CLUSTER_KEYS.namespaces, CLUSTER_KEYS.services, ...ADMIN_LB].map(
      (p): Grant => ({
        permission: "Readwrite",
        range: Range.prefix(prefix + p),
      }),
    ),
  ];
}

const exists = (e: unknown): boolean => /already exists/i.test((e as Error).message ?? "");

async function ensureUser(client: Etcd3, name: string, password: string, grants: Grant[]): Promise<void> {
  const role = client.role(name);
  await role.create().catch((e: unknown) => {
    if (!exists(e)) throw e;
  });
  await role.grant(grants.map((g) => ({ permission: g.permission, range: g.range })));
  const user = client.user(name);
  await user.create(password).catch(async (e: unknown) => {
    if (!exists(e)) throw e;
    await user.setPassword(password);
  });
  await user.addRole(name);
}

export interface SetupRequest {
  readonly nodes: readonly { readonly name: string; readonly password: string }[];
  readonly admin?: { readonly password: string };
  /** Create root (when missing) with this password and enable authentication. */
  readonly enableAuth?: { readonly rootPassword: string };
  readonly prefix?: string;
}

/** Creates the roles and users; `client` must be etcd's root (or auth still off). */
export async function etcdSetup(client: Etcd3, req: SetupRequest): Promise<string[]> {
  const done: string[] = [];
  try {
    for (const n of req.nodes) {
      await ensureUser(client, nodeUser(n.name), n.password, nodeGrants(n.name, req.prefix));
      done.push(nodeUser(n.name));
    }
    if (req.admin) {
      await ensureUser(client, ADMIN_USER, req.admin.password, adminGrants(req.prefix));
      done.push(ADMIN_USER);
    }
    if (req.enableAuth) {
      const created = await client
        .user("root")
        .create(req.enableAuth.rootPassword)
        .then(() => true)
        .catch((e: unknown) => {
          if (!exists(e)) throw e;
          return false;
        });
      done.push(created ? "root" : "root user exists (password unchanged)");
      await client
        .user("root")
        .addRole("root")
        .catch(() => undefined);
      await client.auth.authEnable();
      done.push("auth enabled");
    }
    return done;
  } catch (e) {
    throw new MembraneError(
      "CLUSTER_UNAVAILABLE",
      `Cannot set up the cluster store's users and roles (done so far: ${done.join(", ") || "nothing"}): ${(e as Error).message}`,
      { cause: e, hint: "run it with etcd's root credentials (--etcd-username root --etcd-password-file F)" },
    );
  }
}
