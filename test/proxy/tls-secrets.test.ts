import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { inspect } from "node:util";
import { MembraneError } from "../../src/errors.js";
import type { TlsContext } from "../../src/policy/types.js";
import { TlsSecretStore, type TlsRole } from "../../src/proxy/tls/secrets.js";
import { makeTlsFixtures, type TlsFixtures } from "./fixtures/tls-certs.js";

let fx: TlsFixtures;
before(() => {
  fx = makeTlsFixtures();
});
after(() => fx.cleanup());

const ctx = (name: string, extra: Partial<TlsContext> = {}, namespace?: string): TlsContext => ({
  secret: { name, ...(namespace !== undefined ? { namespace } : {}) },
  ...extra,
});

function loadError(store: TlsSecretStore, c: TlsContext, role: TlsRole): MembraneError {
  try {
    store.load(c, role);
  } catch (e) {
    assert.ok(e instanceof MembraneError);
    return e;
  }
  assert.fail("expected the load to fail");
}

describe("TLS secrets: loading", () => {
  test("a Kubernetes TLS secret's files load; the namespace defaults to 'default'", () => {
    const root = fx.secret("default", "api", {
      "tls.crt": fx.api.cert,
      "tls.key": fx.api.key,
      "ca.crt": fx.ca.cert,
    });
    const l = new TlsSecretStore({ dir: root }).load(ctx("api"), "terminatingTLS");
    assert.equal(l.secret, "default/api");
    assert.equal(l.certificate, fx.api.cert);
    assert.equal(l.privateKey(), fx.api.key);
    assert.equal(l.trustedCA, fx.ca.cert);
    assert.deepEqual(l.files, {
      certificate: path.join(root, "default/api/tls.crt"),
      privateKey: path.join(root, "default/api/tls.key"),
      trustedCA: path.join(root, "default/api/ca.crt"),
    });
    assert.deepEqual(l.warnings, []);
  });

  test("item names from the policy (certificate, privateKey, trustedCA) replace the defaults", () => {
    const root = fx.secret("kube-system", "custom", {
      "a.pem": fx.api.cert,
      "b.pem": fx.api.key,
      "c.pem": fx.ca.cert,
    });
    const l = new TlsSecretStore({ dir: root }).load(
      ctx("custom", { certificate: "a.pem", privateKey: "b.pem", trustedCA: "c.pem" }, "kube-system"),
      "originatingTLS",
    );
    assert.equal(l.secret, "kube-system/custom");
    assert.equal(l.certificate, fx.api.cert);
    assert.equal(l.trustedCA, fx.ca.cert);
  });

  test("originatingTLS with only ca.crt: no client certificate, the CA is used", () => {
    const root = fx.secret("default", "ca-only", { "ca.crt": fx.ca.cert });
    const l = new TlsSecretStore({ dir: root }).load(ctx("ca-only"), "originatingTLS");
    assert.equal(l.certificate, undefined);
    assert.equal(l.privateKey(), undefined);
    assert.equal(l.trustedCA, fx.ca.cert);
  });

  test("originatingTLS with an empty secret: the system CAs (trustedCA undefined)", () => {
    const root = fx.secret("default", "empty", {});
    const l = new TlsSecretStore({ dir: root }).load(ctx("empty"), "originatingTLS");
    assert.equal(l.trustedCA, undefined);
  });

  test("the key is never in JSON or util.inspect output", () => {
    const root = fx.secret("default", "api", { "tls.crt": fx.api.cert, "tls.key": fx.api.key });
    const l = new TlsSecretStore({ dir: root }).load(ctx("api"), "terminatingTLS");
    assert.doesNotMatch(JSON.stringify(l), /PRIVATE KEY/);
    assert.doesNotMatch(inspect(l, { depth: 5, showHidden: true }), /PRIVATE KEY/);
  });
});

describe("TLS secrets: errors name the file and what to do", () => {
  const cases: {
    name: string;
    files: Record<string, string> | undefined;
    ctx?: Partial<TlsContext>;
    role: TlsRole;
    message: (dir: string) => string;
    file: (dir: string) => string;
  }[] = [
    {
      name: "terminatingTLS without tls.crt",
      files: { "ca.crt": "x" },
      role: "terminatingTLS",
      message: (d) => `Cannot load TLS secret default/s (terminatingTLS): ${d}/tls.crt does not exist`,
      file: (d) => `${d}/tls.crt`,
    },
    {
      name: "a missing secret directory",
      files: undefined,
      role: "originatingTLS",
      message: (d) => `Cannot load TLS secret default/s (originatingTLS): the directory ${d} does not exist`,
      file: (d) => d,
    },
    {
      name: "an explicit trustedCA that does not exist",
      files: {},
      ctx: { trustedCA: "bundle.pem" },
      role: "originatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (originatingTLS): ${d}/bundle.pem does not exist (named by trustedCA)`,
      file: (d) => `${d}/bundle.pem`,
    },
    {
      name: "a certificate file that is not PEM",
      files: { "tls.crt": "not a certificate", "tls.key": "k" },
      role: "terminatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (terminatingTLS): ${d}/tls.crt holds no PEM certificate`,
      file: (d) => `${d}/tls.crt`,
    },
    {
      name: "a PEM block that is not X.509",
      files: { "ca.crt": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" },
      role: "originatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (originatingTLS): certificate 1 in ${d}/ca.crt is not valid X.509`,
      file: (d) => `${d}/ca.crt`,
    },
    {
      name: "a key file that is not PEM",
      files: { "tls.crt": "CERT", "tls.key": "garbage" },
      role: "terminatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (terminatingTLS): ${d}/tls.key holds no PEM private key`,
      file: (d) => `${d}/tls.key`,
    },
    {
      name: "a key that is not the certificate's",
      files: { "tls.crt": "CERT", "tls.key": "OTHER_KEY" },
      role: "terminatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (terminatingTLS): ${d}/tls.key is not the key of the first certificate in ${d}/tls.crt`,
      file: (d) => `${d}/tls.key`,
    },
    {
      name: "a certificate without its key",
      files: { "tls.crt": "CERT" },
      role: "originatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (originatingTLS): ${d}/tls.key does not exist, but ${d}/tls.crt does`,
      file: (d) => `${d}/tls.key`,
    },
    {
      name: "an encrypted key",
      files: {
        "tls.crt": "CERT",
        "tls.key": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
      },
      role: "terminatingTLS",
      message: (d) => `Cannot load TLS secret default/s (terminatingTLS): ${d}/tls.key is encrypted`,
      file: (d) => `${d}/tls.key`,
    },
    {
      name: "a file larger than maxFileBytes",
      files: { "ca.crt": "x".repeat(5000) },
      role: "originatingTLS",
      message: (d) =>
        `Cannot load TLS secret default/s (originatingTLS): ${d}/ca.crt is 5000 bytes (at most 4096)`,
      file: (d) => `${d}/ca.crt`,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const sub = (t: string): string =>
        t === "CERT" ? fx.api.cert : t === "OTHER_KEY" ? fx.other.key : t === "k" ? fx.api.key : t;
      const root = fx.secret("default", "placeholder", {});
      const dir = path.join(root, "default", "s");
      fs.rmSync(dir, { recursive: true, force: true });
      if (c.files)
        fx.secret("default", "s", Object.fromEntries(Object.entries(c.files).map(([k, v]) => [k, sub(v)])));
      const e = loadError(new TlsSecretStore({ dir: root, maxFileBytes: 4096 }), ctx("s", c.ctx), c.role);
      assert.equal(e.code, "TLS_SECRET_INVALID");
      assert.equal(e.message, c.message(dir));
      assert.equal(e.location?.file, c.file(dir));
      assert.ok(e.hint && e.hint.length > 10, "says what to do");
      assert.doesNotMatch(e.describe(), /PRIVATE KEY-----\n[A-Za-z0-9+/]{20}/, "no key material");
    });
  }

  test("names that would leave the secrets directory are refused", () => {
    const store = new TlsSecretStore({ dir: "/nonexistent" });
    const bad: TlsContext[] = [
      ctx("../etc"),
      ctx("api", {}, ".."),
      ctx("api", { certificate: "../../etc/passwd" }),
      ctx("api", { trustedCA: ".." }),
      ctx("API"),
    ];
    for (const c of bad) {
      const e = loadError(store, c, "originatingTLS");
      assert.match(e.message, /is not a Kubernetes name|is not a file name/);
    }
  });
});

describe("TLS secrets: warnings and reload", () => {
  test("a key file readable by others loads with a warning (once per load); group access (the proxy group) is how the proxy is meant to read it", () => {
    const root = fx.secret("default", "open", { "tls.crt": fx.api.cert, "tls.key": fx.api.key }, 0o644);
    const told: string[] = [];
    const store = new TlsSecretStore({ dir: root, onWarning: (m) => told.push(m) });
    const l = store.load(ctx("open"), "terminatingTLS");
    const keyFile = path.join(root, "default/open/tls.key");
    const want = `TLS secret default/open: ${keyFile} is accessible by others (mode 644); chmod o-rwx it`;
    assert.deepEqual(l.warnings, [want]);
    store.load(ctx("open"), "terminatingTLS");
    assert.deepEqual(told, [want]);
  });

  test("a changed file is read again after recheckMs; the same object until then", () => {
    let now = 0;
    const root = fx.secret("default", "rot", { "tls.crt": fx.api.cert, "tls.key": fx.api.key });
    const store = new TlsSecretStore({ dir: root, recheckMs: 1000, now: () => now });
    const first = store.load(ctx("rot"), "terminatingTLS");
    now = 500;
    assert.equal(store.load(ctx("rot"), "terminatingTLS"), first, "cached");
    const d = path.join(root, "default/rot");
    fs.writeFileSync(path.join(d, "tls.crt.new"), fx.other.cert);
    fs.renameSync(path.join(d, "tls.crt.new"), path.join(d, "tls.crt"));
    fs.writeFileSync(path.join(d, "tls.key.new"), fx.other.key, { mode: 0o600 });
    fs.renameSync(path.join(d, "tls.key.new"), path.join(d, "tls.key"));
    now = 900;
    assert.equal(store.load(ctx("rot"), "terminatingTLS"), first, "not looked at before recheckMs");
    now = 1600;
    const second = store.load(ctx("rot"), "terminatingTLS");
    assert.notEqual(second, first);
    assert.equal(second.certificate, fx.other.cert);
    now = 3000;
    assert.equal(store.load(ctx("rot"), "terminatingTLS"), second, "unchanged files are not read again");
  });

  test("an error stays until a file changes, then the fixed secret loads", () => {
    let now = 0;
    const root = fx.secret("default", "fix", { "tls.crt": "broken" });
    const store = new TlsSecretStore({ dir: root, recheckMs: 0, now: () => now });
    const e1 = loadError(store, ctx("fix"), "originatingTLS");
    now = 10;
    assert.equal(
      loadError(store, ctx("fix"), "originatingTLS"),
      e1,
      "the same error, files not parsed again",
    );
    fx.secret("default", "fix", { "tls.crt": fx.api.cert, "tls.key": fx.api.key });
    now = 20;
    assert.equal(store.load(ctx("fix"), "originatingTLS").certificate, fx.api.cert);
  });
});
