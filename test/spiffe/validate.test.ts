/**
 * The X.509-SVID validator refuses, one by one, every case X509-SVID.md (sections 2-5) forbids,
 * and accepts what the CA issues.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../src/errors.js";
import { validateX509Svid } from "../../src/spiffe/validate.js";
import { EKU, KU, goodLeaf, mk, rootOf, type CertSpec, type Issued } from "./certs-fixture.js";

const TD = "td.test";
const H = 3_600_000;

describe("validateX509Svid", () => {
  test("refuses each case the X.509-SVID rules forbid, naming it", async () => {
    const root = await rootOf(TD);
    const other = await rootOf("other.test");
    const rootPl1 = await rootOf(TD, { pathLen: 1, subject: "CN=root pl1" });
    const inter = await mk({ ca: true, ku: KU.keyCertSign, issuer: rootPl1, subject: "CN=inter", uris: [`spiffe://${TD}`] }); // prettier-ignore
    const interUnder0 = await mk({ ca: true, ku: KU.keyCertSign, issuer: root, subject: "CN=inter0" });
    const interWithPath = await mk({ ca: true, ku: KU.keyCertSign, issuer: rootPl1, subject: "CN=interp", uris: [`spiffe://${TD}/x`] }); // prettier-ignore
    const notCa = await mk({ ca: false, ku: KU.keyCertSign, issuer: rootPl1, subject: "CN=notca" });
    const noCertSign = await mk({ ca: true, ku: KU.cRLSign, issuer: rootPl1, subject: "CN=nocs" });
    const expiredRoot = await rootOf(TD, { notAfter: new Date(Date.now() - 1000), notBefore: new Date(Date.now() - 2 * H), subject: "CN=old" }); // prettier-ignore
    const cases: { name: string; leaf: CertSpec; chain?: Issued[]; bundle?: Issued[]; why: RegExp }[] = [
      { name: "two URI SANs", leaf: { ...goodLeaf(root), uris: [`spiffe://${TD}/a`, `spiffe://${TD}/b`] }, why: /2 URI SANs/ }, // prettier-ignore
      { name: "no URI SAN", leaf: { ...goodLeaf(root), uris: [] }, why: /0 URI SANs/ },
      {
        name: "not the spiffe scheme",
        leaf: { ...goodLeaf(root), uris: [`https://${TD}/a`] },
        why: /scheme/,
      },
      { name: "another trust domain's ID", leaf: goodLeaf(root, "spiffe://other.test/identity/300"), why: /trust domain other\.test/ }, // prettier-ignore
      { name: "a certificate of another trust domain's CA", leaf: goodLeaf(other), why: /not signed by a root of the bundle/ }, // prettier-ignore
      { name: "a root-path ID", leaf: goodLeaf(root, `spiffe://${TD}`), why: /no path/ },
      {
        name: "a malformed ID (dot segment)",
        leaf: goodLeaf(root, `spiffe://${TD}/a/../b`),
        why: /'\.' or '\.\.'/,
      },
      { name: "a leaf that is a CA", leaf: { ...goodLeaf(root), ca: true }, why: /is a CA certificate/ },
      { name: "no key usage", leaf: { ...goodLeaf(root), ku: undefined }, why: /no key usage/ },
      {
        name: "a non-critical key usage",
        leaf: { ...goodLeaf(root), kuCritical: false },
        why: /not critical/,
      },
      {
        name: "no digitalSignature",
        leaf: { ...goodLeaf(root), ku: KU.keyEncipherment },
        why: /lacks digitalSignature/,
      },
      { name: "keyCertSign on a leaf", leaf: { ...goodLeaf(root), ku: KU.digitalSignature | KU.keyCertSign }, why: /keyCertSign or cRLSign/ }, // prettier-ignore
      { name: "cRLSign on a leaf", leaf: { ...goodLeaf(root), ku: KU.digitalSignature | KU.cRLSign }, why: /keyCertSign or cRLSign/ }, // prettier-ignore
      { name: "an EKU without clientAuth", leaf: { ...goodLeaf(root), eku: [EKU.serverAuth] }, why: /serverAuth or clientAuth/ }, // prettier-ignore
      {
        name: "an empty subject with a non-critical SAN",
        leaf: { ...goodLeaf(root), subject: "" },
        why: /empty subject/,
      },
      { name: "an expired SVID", leaf: { ...goodLeaf(root), notBefore: new Date(Date.now() - 2 * H), notAfter: new Date(Date.now() - 1000) }, why: /has expired/ }, // prettier-ignore
      { name: "a not-yet-valid SVID", leaf: { ...goodLeaf(root), notBefore: new Date(Date.now() + H), notAfter: new Date(Date.now() + 2 * H) }, why: /not valid yet/ }, // prettier-ignore
      {
        name: "an expired root",
        leaf: goodLeaf(expiredRoot),
        bundle: [expiredRoot],
        why: /root has expired/,
      },
      { name: "an intermediate under a pathLen 0 root", leaf: goodLeaf(interUnder0), chain: [interUnder0], why: /allows 0 intermediates/ }, // prettier-ignore
      { name: "an intermediate with a path in its SPIFFE ID", leaf: goodLeaf(interWithPath), chain: [interWithPath], bundle: [rootPl1], why: /has a path/ }, // prettier-ignore
      { name: "a signer that is not a CA", leaf: goodLeaf(notCa), chain: [notCa], bundle: [rootPl1], why: /not a CA certificate/ }, // prettier-ignore
      { name: "a signer without keyCertSign", leaf: goodLeaf(noCertSign), chain: [noCertSign], bundle: [rootPl1], why: /lacks key usage keyCertSign/ }, // prettier-ignore
    ];
    for (const c of cases) {
      const leaf = await mk(c.leaf);
      const chain = [leaf.der, ...(c.chain ?? []).map((x) => x.der)];
      const bundle = (c.bundle ?? [root]).map((x) => x.der);
      assert.throws(
        () => validateX509Svid(chain, bundle, { trustDomain: TD }),
        (e: unknown) =>
          e instanceof MembraneError && e.code === "SPIFFE_SVID_INVALID" && c.why.test(e.message),
        c.name,
      );
    }
    // ...and a good chain through an allowed intermediate passes.
    const okLeaf = await mk(goodLeaf(inter));
    assert.equal(
      validateX509Svid([okLeaf.der, inter.der], [rootPl1.der], { trustDomain: TD }).id.path,
      "/identity/300",
    );
  });

  test("hostile input is bounded: garbage, empty, too many certificates", async () => {
    const root = await rootOf(TD);
    const leaf = await mk(goodLeaf(root));
    const bad = (chain: Uint8Array[], why: RegExp): void =>
      assert.throws(() => validateX509Svid(chain, [root.der], { trustDomain: TD }), why);
    bad([], /chain is empty/);
    bad([Buffer.from("not a certificate")], /not a DER X\.509 certificate/);
    bad([Buffer.alloc(20_000, 0x30)], /larger than/);
    bad(
      Array.from({ length: 9 }, () => leaf.der),
      /more than 8/,
    );
  });
});
