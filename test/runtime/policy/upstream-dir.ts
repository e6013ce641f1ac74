import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The vendored upstream files live in the source tree (not copied to dist/). */
export const UPSTREAM = join(
  dirname(fileURLToPath(import.meta.url)),
  "../../../../test/runtime/policy/upstream",
);
