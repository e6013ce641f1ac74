// Endpoint create and re-create (adoption) p50/p99 over 100 endpoints in throwaway
// namespaces (prefix mbt....rn), for comparing two builds side by side:
//   node scripts/bench-endpoint-create.mjs /work/main/dist dist
// Needs root. Prints one JSON line per build; asserts nothing.
const q = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return Number(s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)].toFixed(1));
};
for (const dist of process.argv.slice(2)) {
  const base = new URL(`file://${dist.startsWith("/") ? dist : `${process.cwd()}/${dist}`}/`);
  const { createNode, createEndpoint } = await import(new URL("src/datapath/endpoint.js", base).href);
  const { cleanupPrefix } = await import(new URL("src/datapath/netns.js", base).href);
  const prefix = "mbt" + Math.random().toString(36).slice(2, 6) + "rn";
  try {
    const node = await createNode({
      netns: `${prefix}-node`,
      gateway4: "10.202.0.1",
      gateway6: "fd00:202::1",
      podCidr4: "10.202.0.0/24",
      podCidr6: "fd00:202::/112",
    });
    const eps = [];
    const create = [];
    for (let i = 0; i < 100; i++) {
      const p = {
        node,
        name: `e${i}`,
        netns: `${prefix}-e${i}`,
        hostIfname: `${prefix}h${i}`,
        ipv4: `10.202.0.${i + 10}`,
        ipv6: `fd00:202::${(i + 10).toString(16)}`,
      };
      const t0 = performance.now();
      await createEndpoint(p);
      create.push(performance.now() - t0);
      eps.push(p);
    }
    const again = [];
    for (const p of eps) {
      const t0 = performance.now();
      await createEndpoint(p);
      again.push(performance.now() - t0);
    }
    const ms = (a) => ({ p50: q(a, 0.5), p99: q(a, 0.99) });
    console.log(JSON.stringify({ dist, createMs: ms(create), recreateUnchangedMs: ms(again) }));
  } finally {
    await cleanupPrefix(prefix + "-");
  }
}
