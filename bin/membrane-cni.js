#!/usr/bin/env node
// membrane-cni, the CNI plugin: compiled TypeScript under dist/ (npm run build). Install it
// (or a link to it) in a CNI plugin directory, e.g. /opt/cni/bin/membrane-cni.
import("../dist/src/cni/main.js")
  .then((m) => m.main())
  .catch((err) => {
    const details = err instanceof Error ? err.message : String(err);
    process.stdout.write(
      JSON.stringify({ cniVersion: "1.1.0", code: 999, msg: "internal error", details }) + "\n",
    );
    process.exit(1);
  });
