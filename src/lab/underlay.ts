/**
 * Test "nodes" for cluster tests: an underlay bridge in a namespace of its
 * own, and per node a namespace joined to it by a veth (172.31.<net>.<i+1>/24),
 * optionally with a pod namespace behind a veth (pod CIDR 10.<base+i>.0.0/24,
 * the pod at .10, the node's side .1). Every name carries the prefix; nothing
 * touches the machine's own network.
 */
import { runRaw } from "../datapath/exec.js";
import { cleanupPrefix } from "../datapath/netns.js";

export async function sh(
  netns: string | undefined,
  argv: readonly string[],
  stdin?: string,
): Promise<string> {
  const r = await runRaw(argv, { ...(netns !== undefined ? { netns } : {}), ...(stdin ? { stdin } : {}) });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}${netns ? ` in ${netns}` : ""}: ${r.stderr.trim()}`);
  return r.stdout;
}

const batch = (netns: string, lines: readonly string[]): Promise<string> =>
  sh(undefined, ["ip", "-n", netns, "-batch", "-"], lines.join("\n") + "\n");

export interface TestNode {
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  readonly podCidr: string;
  /** The pod namespace and its address (when made with pods). */
  readonly pod: string;
  readonly podIp: string;
  /** With `ipv6`: fd00:<base+i>::/64, the pod at ::10. */
  readonly podCidr6?: string;
  readonly podIp6?: string;
}

export class Underlay {
  readonly nodes: TestNode[] = [];
  private constructor(
    readonly prefix: string,
    readonly ns: string,
    readonly net: number,
  ) {}

  /** The bridge namespace `<prefix>-ul` with bridge `br0`. */
  static async create(prefix: string, net = 31): Promise<Underlay> {
    const u = new Underlay(prefix, `${prefix}-ul`, net);
    await sh(undefined, ["ip", "netns", "add", u.ns]);
    await batch(u.ns, ["link add br0 type bridge", "link set br0 up", "link set lo up"]);
    return u;
  }

  /**
   * A node namespace `<prefix>-n<i>` on the underlay (address 172.31.<net>.<i+1>/24 on `ul0`);
   * `netns`: an agent's node namespace (lo left down for the agent); `pod`: a pod namespace `<prefix>-p<i>` behind `pod0` with 10.<base+i>.0.10.
   */
  async node(
    i: number,
    o: { pod?: boolean; base?: number; netns?: string; podCidr?: string; ipv6?: boolean } = {},
  ): Promise<TestNode> {
    const netns = o.netns ?? `${this.prefix}-n${i}`;
    const ip = `172.${this.net}.0.${i + 1}`;
    const podCidr = o.podCidr ?? `10.${(o.base ?? 220) + i}.0.0/24`;
    const podIp = `10.${(o.base ?? 220) + i}.0.10`;
    const pod = `${this.prefix}-p${i}`;
    await sh(undefined, ["sh", "-c", `test -e /run/netns/${netns} || ip netns add ${netns}`]);
    const u = `${this.prefix}u${i}`;
    await batch(this.ns, [
      `link add ${u} type veth peer name ul0 netns ${netns}`,
      `link set ${u} master br0 up`,
    ]);
    await sh(netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0"]);
    // An agent's node (`netns` given): its lo is the agent's to bring up (adoptNode prepares the node then).
    await batch(netns, [
      ...(o.netns ? [] : ["link set lo up"]),
      `addr add ${ip}/24 dev ul0`,
      "link set ul0 up",
    ]);
    if (o.pod) {
      await sh(undefined, ["ip", "netns", "add", pod]);
      await batch(netns, [
        `link add pod0 type veth peer name eth0 netns ${pod}`,
        `addr add ${podIp.replace(/\.10$/, ".1")}/24 dev pod0`,
        "link set pod0 up",
      ]);
      await batch(pod, [
        "link set lo up",
        `addr add ${podIp}/24 dev eth0`,
        "link set eth0 up",
        `route add default via ${podIp.replace(/\.10$/, ".1")}`,
      ]);
      if (o.ipv6) {
        const b = `fd00:${(o.base ?? 220) + i}::`;
        await sh(netns, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        await batch(netns, [`addr add ${b}1/64 dev pod0 nodad`]);
        await batch(pod, [`addr add ${b}10/64 dev eth0 nodad`, `route add default via ${b}1`]);
      }
    }
    const v6 = o.ipv6 ? `fd00:${(o.base ?? 220) + i}::` : undefined;
    const n = {
      name: `node${i}`,
      netns,
      ip,
      podCidr,
      pod,
      podIp,
      ...(v6 ? { podCidr6: `${v6}/64`, podIp6: `${v6}10` } : {}),
    };
    this.nodes.push(n);
    return n;
  }

  async destroy(): Promise<void> {
    await cleanupPrefix(this.prefix);
  }
}

/** Whether `from` (a namespace) gets an answer to one ping of `to` (IPv4 or IPv6). */
export async function pings(from: string, to: string): Promise<boolean> {
  // Up to 3 echoes, any reply counts: right after the links come up, IPv6 neighbour discovery
  // waits for the link-local addresses' DAD, and the first echo can be lost to it.
  const argv = ["ping", ...(to.includes(":") ? ["-6"] : []), "-c", "3", "-i", "0.5", "-W", "2", to];
  const r = await runRaw(argv, { netns: from });
  return r.status === 0;
}
