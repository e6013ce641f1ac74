/** An HTTP answer of the Kubernetes API other than 200, with the message of its Status object. */
import { MembraneError } from "../errors.js";

/** An HTTP answer other than 200; `status` 410 means Gone (the resourceVersion or continue token expired). */
export class K8sHttpError extends MembraneError {
  constructor(
    readonly status: number,
    path: string,
    why: string,
  ) {
    super(
      "K8S_API_FAILED",
      `Cannot read ${path} from the Kubernetes API: HTTP ${status}${why ? ` (${why})` : ""}`,
    );
  }
}

/** The message of a Status object, shortened (it is the server's text). */
export function statusMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    return typeof m === "string" ? m.slice(0, 200) : "";
  } catch {
    return "";
  }
}
