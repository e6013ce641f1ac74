/**
 * The packet path of the layout benchmark: a node namespace with two real
 * endpoints (veth pairs, routed, as src/datapath/endpoint.ts builds them);
 * a small C sender (built with gcc at start) in endpoint 1 sends UDP to
 * endpoint 2, each packet to another destination port, so that every packet
 * is a new conntrack entry in the node and walks the whole lookup path (two
 * ipcache lookups, the sender's egress maps, the receiver's ingress maps).
 * The receiver counts and drops them in its own prerouting hook (no socket,
 * no ICMP errors going back).
 *
 *   ep1 (sender) --veth--> node netns: ct, pre_c, policy maps --veth--> ep2 (counter drop)
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEndpoint, createNode } from "../src/datapath/endpoint.js";
import { runIn } from "./layout-run.js";
import { TRAFFIC_PORTS } from "./layout-model.js";

const SENDER_C = String.raw`
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#define BATCH 64
int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: dst sport portlo porthi count\n"); return 2; }
  int sport = atoi(argv[2]), lo = atoi(argv[3]), hi = atoi(argv[4]);
  long count = atol(argv[5]);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(sport) };
  if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) { perror("bind"); return 1; }
  struct sockaddr_in to[BATCH];
  struct mmsghdr msgs[BATCH];
  char payload[16] = "membrane-bench";
  struct iovec iov = { .iov_base = payload, .iov_len = sizeof payload };
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BATCH; i++) {
    memset(&to[i], 0, sizeof to[i]);
    to[i].sin_family = AF_INET;
    inet_pton(AF_INET, argv[1], &to[i].sin_addr);
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_namelen = sizeof to[i];
    msgs[i].msg_hdr.msg_iov = &iov;
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  struct timespec t0, t1;
  long sent = 0, errors = 0;
  int port = lo;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (sent + errors < count) {
    int n = count - sent - errors < BATCH ? (int)(count - sent - errors) : BATCH;
    for (int i = 0; i < n; i++) { to[i].sin_port = htons(port); port = port == hi ? lo : port + 1; }
    int r = sendmmsg(fd, msgs, n, 0);
    if (r < 0) { if (errno == ENOBUFS || errno == EPERM) { errors++; continue; } perror("sendmmsg"); return 1; }
    sent += r;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%ld %ld %.0f\n", sent, errors, (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec));
  return 0;
}
`;

export interface TrafficLab {
  node: string;
  sender: { netns: string; ifname: string; ipv4: string };
  receiver: { netns: string; ifname: string; ipv4: string };
  sendBin: string;
  tmp: string;
}

/** Why the packet-path figures cannot be measured here, or undefined. */
export function trafficSkipReason(): string | undefined {
  if (spawnSync("sh", ["-c", "command -v gcc"]).status !== 0) return "needs gcc to build the UDP sender";
  return undefined;
}

export async function createTrafficLab(prefix: string, ipv4: [string, string]): Promise<TrafficLab> {
  const tmp = mkdtempSync(join(tmpdir(), "mbl-"));
  const src = join(tmp, "send.c");
  const sendBin = join(tmp, "send");
  writeFileSync(src, SENDER_C);
  const cc = spawnSync("gcc", ["-O2", "-o", sendBin, src], { encoding: "utf8" });
  if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.63.255.254",
    podCidr4: "10.64.0.0/16",
  });
  const eps = [];
  for (const [i, addr] of ipv4.entries()) {
    const e = await createEndpoint({
      node,
      name: `e${i + 1}`,
      netns: `${prefix}-e${i + 1}`,
      hostIfname: `${prefix}h${i + 1}`,
      ipv4: addr,
    });
    eps.push({ netns: e.netns, ifname: e.hostIfname, ipv4: addr });
  }
  const [sender, receiver] = eps as [TrafficLab["sender"], TrafficLab["receiver"]];
  const rx = [
    "table inet mblrx {",
    "\tchain pre {",
    "\t\ttype filter hook prerouting priority -400; policy accept;",
    `\t\tudp dport ${TRAFFIC_PORTS.lo}-${TRAFFIC_PORTS.hi} counter drop`,
    "\t}",
    "}",
  ].join("\n");
  runIn(receiver.netns, ["nft", "-f", "-"], rx + "\n");
  return { node: node.netns, sender, receiver, sendBin, tmp };
}

export function destroyTrafficLab(lab: TrafficLab): void {
  rmSync(lab.tmp, { recursive: true, force: true });
}

function rxCount(lab: TrafficLab): number {
  const r = runIn(lab.receiver.netns, ["nft", "-j", "list", "chain", "inet", "mblrx", "pre"]);
  const m = /"packets":\s*(\d+)/.exec(r.stdout);
  if (!m) throw new Error("receiver counter not found");
  return Number(m[1]);
}

/** Packets through an allow chain's counter (proves the lookups matched). */
export function chainCount(ns: string, table: string, chainName: string): number {
  const r = runIn(ns, ["nft", "-j", "list", "chain", "inet", table, chainName]);
  const m = /"packets":\s*(\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

export interface FlowRun {
  sent: number;
  received: number;
  /** Packets delivered per second, each one a new flow. */
  pps: number;
  /**
   * The sender's CPU time (user + system) per packet, in µs: a veth delivers in the
   * sender's own softirq, so this includes the node's conntrack and nftables work and
   * is less sensitive than `pps` to other processes taking the CPU.
   */
  cpuUsPerPacket: number;
}

let sport = 1024;

/** Sends `count` packets, each to a new destination port (a new flow); returns the delivered rate. */
export async function sendFlows(lab: TrafficLab, count: number): Promise<FlowRun> {
  const before = rxCount(lab);
  // A source port never used before in this run: every 5-tuple is new to conntrack.
  sport = sport >= 9999 ? 1024 : sport + 1;
  const r = runIn(lab.sender.netns, [
    lab.sendBin,
    lab.receiver.ipv4,
    String(sport),
    String(TRAFFIC_PORTS.lo),
    String(TRAFFIC_PORTS.hi),
    String(count),
  ]);
  const [sent, , ns] = r.stdout.trim().split(" ").map(Number) as [number, number, number];
  await new Promise((res) => setTimeout(res, 200)); // let the backlog drain before counting
  const received = rxCount(lab) - before;
  return { sent, received, pps: received / (ns / 1e9), cpuUsPerPacket: ((r.userMs + r.sysMs) * 1000) / sent };
}
