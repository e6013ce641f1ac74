/** The error of a DatapathState the compiler refuses (compile.ts, compile-endpoint.ts, policy-groups.ts). */
import { MembraneError } from "../errors.js";

export function invalid(path: string, why: string): MembraneError {
  return new MembraneError("DATAPATH_STATE_INVALID", `Cannot compile ${path}: ${why}`, {
    location: { path },
    hint: "Fix the endpoint record handed to the datapath.",
  });
}
