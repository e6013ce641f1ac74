/**
 * The agent API's body limit against a client that announces a huge body:
 * the 413 comes from the header, at once, without waiting for (or buffering)
 * the body, and the connection is closed.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { pino } from "pino";
import { ApiServer, DEFAULT_MAX_BODY } from "../../src/agent/api/server.js";

const root = mkdtempSync(join(tmpdir(), "membrane-api-limits-"));
after(() => rmSync(root, { recursive: true, force: true }));

describe("agent API: request body limit", () => {
  test(
    "a body announced as 1 GiB gets 413 with the limit at once, unread, and the connection closes",
    { timeout: 60_000 },
    async () => {
      const socketPath = join(root, "run", "agent.sock");
      let called = false;
      const server = new ApiServer({
        socketPath,
        logger: pino({ level: "silent" }),
        routes: [{ method: "POST", path: "/v1/policies", handler: () => (called = true) }],
      });
      await server.start();
      try {
        const sock = createConnection(socketPath);
        await once(sock, "connect");
        const chunks: Buffer[] = [];
        sock.on("data", (c: Buffer) => chunks.push(c));
        // Headers and the first bytes of a body that never comes in full.
        sock.write(
          "POST /v1/policies HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n" +
            `Content-Length: ${1 << 30}\r\n\r\n{"text": "`,
        );
        await once(sock, "close");
        const answer = Buffer.concat(chunks).toString("utf8");
        assert.match(answer, /^HTTP\/1\.1 413 /);
        assert.match(answer, /\r\nConnection: close\r\n/i);
        const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as {
          error: { code: string; message: string };
        };
        assert.equal(body.error.code, "API_REQUEST_INVALID");
        assert.equal(
          body.error.message,
          `Cannot POST /v1/policies: the request body has ${1 << 30} bytes, more than the limit of ${DEFAULT_MAX_BODY}`,
        );
        assert.equal(called, false);
      } finally {
        await server.stop();
      }
    },
  );
});
