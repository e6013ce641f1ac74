/**
 * The host firewall in the kernel (compile-host.ts), with real packets in a node
 * namespace and two endpoints (needs root): traffic to and from the node itself
 * is judged by the host's policy; forwarded pod traffic and what Cilium always
 * allows (loopback, replies, the node to its own pods) are not.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import type { DatapathState, HostFirewall, PolicySegment } from "../../src/datapath/types.js";
import { Lab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();
const A = 1001;
const B = 1002;
const TCP = 6;
const NODE = "10.200.0.1";

const seg = (
  identity: number,
  port: number,
  action: "allow" | "deny" = "allow",
  ruleId = 1,
): PolicySegment => ({
  identity,
  proto: TCP,
  lo: port,
  hi: port,
  action,
  ruleId,
});

describe("host firewall (root: netns, nftables, real packets)", { skip: skip ?? false }, () => {
  let lab: Lab;
  const withHost = (host: HostFirewall | undefined): DatapathState => {
    const s = lab.state();
    return host ? { ...s, host } : s;
  };
  const baseChains = async (): Promise<string> =>
    (await runRaw(["nft", "list", "table", "inet", "membrane"], { netns: lab.node.netns })).stdout;

  before(async () => {
    lab = await Lab.create(
      "hf",
      [
        { name: "a", id: 1, identity: A },
        { name: "b", id: 2, identity: B },
      ],
      { tcp: [80] },
    );
    for (const port of [22, 23]) await lab.nodeHost.agent.request({ op: "listen", proto: "tcp", port });
  });
  after(async () => {
    await lab?.destroy();
  });

  test("no host policy: no input or output hook of ours, the node is open", async () => {
    await lab.reconciler.apply(
      withHost({ ingress: { enforced: false, segments: [] }, egress: { enforced: false, segments: [] } }),
    );
    const text = await baseChains();
    assert.doesNotMatch(text, /hook input/);
    assert.doesNotMatch(text, /hfw_out_c/);
    assert.equal(await lab.ep("b").tcp(NODE, 23), "ok");
  });

  test("an established connection to the node survives a host policy that would not allow it", async () => {
    assert.equal(await lab.ep("b").open("c23", NODE, 23), "ok");
    await lab.reconciler.apply(
      withHost({
        ingress: { enforced: true, segments: [seg(A, 22)] },
        egress: { enforced: false, segments: [] },
      }),
    );
    assert.equal(await lab.ep("b").send("c23"), "ok");
  });

  test("ingress: a pod allowed to :22 reaches it, :23 and another pod are dropped; pod to pod is not judged", async () => {
    await lab.reconciler.apply(
      withHost({
        ingress: { enforced: true, segments: [seg(A, 22)] },
        egress: { enforced: false, segments: [] },
      }),
    );
    assert.match(await baseChains(), /hook input/);
    assert.equal(await lab.ep("a").tcp(NODE, 22), "ok");
    assert.equal(await lab.ep("a").tcp(NODE, 23), "timeout");
    assert.equal(await lab.ep("b").tcp(NODE, 22), "timeout");
    assert.equal(await lab.ep("b").tcp(lab.ep("a").ipv4, 80), "ok");
    // The node's own loopback is never judged.
    assert.equal(await lab.nodeHost.tcp("127.0.0.1", 23), "ok");
    assert.equal(await lab.nodeHost.tcp(NODE, 23), "ok");
  });

  test("a deny segment beats the allow for that port", async () => {
    await lab.reconciler.apply(
      withHost({
        ingress: { enforced: false, segments: [seg(A, 22, "deny", 2)] },
        egress: { enforced: false, segments: [] },
      }),
    );
    assert.equal(await lab.ep("a").tcp(NODE, 22), "timeout");
    assert.equal(await lab.ep("a").tcp(NODE, 23), "ok");
  });

  test("egress default deny: the node still reaches its own pods (their ingress decides)", async () => {
    await lab.reconciler.apply(
      withHost({ ingress: { enforced: false, segments: [] }, egress: { enforced: true, segments: [] } }),
    );
    assert.match(await baseChains(), /hfw_out_c/);
    assert.equal(await lab.nodeHost.tcp(lab.ep("a").ipv4, 80), "ok");
    assert.equal(await lab.nodeHost.tcp("127.0.0.1", 22), "ok");
  });

  test("removing the host policy reopens everything and leaves no hook", async () => {
    await lab.reconciler.apply(
      withHost({ ingress: { enforced: true, segments: [] }, egress: { enforced: true, segments: [] } }),
    );
    assert.equal(await lab.ep("a").tcp(NODE, 22), "timeout");
    await lab.reconciler.apply(withHost(undefined));
    assert.equal(await lab.ep("a").tcp(NODE, 22), "ok");
    assert.equal(await lab.ep("b").tcp(NODE, 23), "ok");
    const text = await baseChains();
    assert.doesNotMatch(text, /hook input/);
    assert.doesNotMatch(text, /host_in/);
  });
});
