/**
 * A lab cluster's etcd under least privilege (LabClusterOptions.etcdAuth), as a real cluster runs
 * it after `membrane cluster etcd-setup --enable-auth`: the roles and users of the real etcdSetup
 * (cluster/etcd-setup.ts), authentication on, a random password per user in a file only its owner
 * reads (the lab's temp dir).
 *
 *   etcd root --etcdSetup--> membrane-node-n1 .. nN, membrane-admin, auth on
 *   agent nX  --etcd-username membrane-node-nX --etcd-password-file <dir>/nX/etcd.password
 *   admin     membrane apply --cluster-store ... --etcd-username membrane-admin --etcd-password-file <dir>/membrane-admin.password
 *
 * So what a lab shows under auth is what the roles allow: each agent writes only its own node's
 * keys, Services and EndpointSlices are the admin's (cli/commands/apply-lb-cluster.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { ADMIN_USER, etcdSetup, nodeUser } from "../cluster/etcd-setup.js";

export interface LabEtcdAuth {
  /** membrane-admin and the file holding its password (for `membrane apply --cluster-store`). */
  readonly admin: { readonly username: string; readonly passwordFile: string };
  /** etcd's root password (to read or change roles in a test). */
  readonly rootPassword: string;
  /** Node `name`'s credentials: its user and the file holding its password. */
  node(name: string): { readonly username: string; readonly passwordFile: string };
  /** The flags giving node `name`'s agent its own credentials. */
  agentArgs(name: string): string[];
}

const secret = (): string => randomBytes(18).toString("base64url");

function passwordFile(dir: string, user: string, password: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = join(dir, `${user}.password`);
  writeFileSync(f, `${password}\n`, { mode: 0o600 });
  return f;
}

/**
 * Creates the users and roles on the etcd at `endpoint` (auth still off) and turns authentication
 * on; the password files go to `dir`. Nodes are named as the lab names them (n1, n2, ...).
 */
export async function setupLabEtcdAuth(
  endpoint: string,
  nodes: readonly string[],
  dir: string,
): Promise<LabEtcdAuth> {
  const passwords = new Map(nodes.map((n) => [n, secret()]));
  const admin = secret();
  const rootPassword = secret();
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    await etcdSetup(client, {
      nodes: [...passwords].map(([name, password]) => ({ name, password })),
      admin: { password: admin },
      enableAuth: { rootPassword },
    });
  } finally {
    client.close();
  }
  const files = new Map([...passwords].map(([n, p]) => [n, passwordFile(dir, nodeUser(n), p)]));
  const node = (name: string): { username: string; passwordFile: string } => {
    const f = files.get(name);
    if (f === undefined) throw new Error(`the lab's etcd has no user for node ${name}`);
    return { username: nodeUser(name), passwordFile: f };
  };
  return {
    admin: { username: ADMIN_USER, passwordFile: passwordFile(dir, ADMIN_USER, admin) },
    rootPassword,
    node,
    agentArgs: (name) => {
      const c = node(name);
      return ["--etcd-username", c.username, "--etcd-password-file", c.passwordFile];
    },
  };
}
