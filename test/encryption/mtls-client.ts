// A hand-made peer of the mTLS node tunnel, run in a node's namespace by mtls-lab.test.ts:
// TLS 1.3 to a tunnel port with the client certificate given (PEM files), one HTTP/2 CONNECT,
// a marker written, what comes back read. Prints one JSON line: {status?, reply?, error?}.
//   node mtls-client.js '{"host","port","cert","key","authority","marker"}'
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import tls from "node:tls";

interface Args {
  host: string;
  port: number;
  cert: string;
  key: string;
  authority: string;
  marker: string;
}

const a = JSON.parse(process.argv[2] ?? "{}") as Args;
const out = (o: object): void => {
  process.stdout.write(JSON.stringify(o) + "\n");
  process.exit(0);
};
setTimeout(() => out({ error: "timeout" }), 10_000).unref();
const sock = tls.connect({
  host: a.host,
  port: a.port,
  cert: readFileSync(a.cert),
  key: readFileSync(a.key),
  rejectUnauthorized: false, // an attacker's client: it does not care who answers
  minVersion: "TLSv1.3",
  ALPNProtocols: ["h2"],
  checkServerIdentity: () => undefined,
});
sock.on("error", (e) => out({ error: `tls: ${e.message}` }));
sock.once("secureConnect", () => {
  const s = http2.connect(`https://${a.host}:${a.port}`, { createConnection: () => sock });
  s.on("error", (e) => out({ error: `h2: ${e.message}` }));
  s.on("close", () => out({ error: "session closed" }));
  const st = s.request({ ":method": "CONNECT", ":authority": a.authority }, { endStream: false });
  st.on("error", (e) => out({ error: `stream: ${e.message}` }));
  st.on("response", (h) => {
    const status = Number(h[":status"]);
    if (status !== 200) return out({ status });
    let reply = "";
    st.on("data", (d: Buffer) => {
      reply += d.toString();
      if (reply.includes(a.marker)) out({ status, reply });
    });
    st.write(a.marker + "\n");
  });
});
