/**
 * The leaf's fields read straight from DER (cert-fields.ts) are exactly what @peculiar/x509 (the
 * reference, which the validator used for the leaf before) reads from the same certificate, over a
 * table of certificates varying every field the SVID rules judge; malformed DER is refused, never
 * half read; and a leaf with any byte changed is never accepted by the validator.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as x509 from "../../src/spiffe/x509.js";
import { readCertFields } from "../../src/spiffe/cert-fields.js";
import { validateX509Svid } from "../../src/spiffe/validate.js";
import { SIGN_ALG } from "../../src/spiffe/certs.js";
import { EKU, KU, goodLeaf, mk, reference, rootOf, type CertSpec } from "./certs-fixture.js";

const TD = "td.test";
const H = 3_600_000;

describe("readCertFields", () => {
  test("reads what @peculiar/x509 reads, field by field", async () => {
    const root = await rootOf(TD);
    const leaf = goodLeaf(root);
    const specs: { name: string; spec: CertSpec }[] = [
      { name: "a good leaf", spec: leaf },
      { name: "a root", spec: { ca: true, pathLen: 0, ku: KU.keyCertSign | KU.cRLSign, uris: [`spiffe://${TD}`], subject: "CN=r" } }, // prettier-ignore
      { name: "no extensions but a SAN", spec: { uris: [`spiffe://${TD}/a`] } },
      { name: "no extensions at all", spec: {} },
      { name: "two URI SANs", spec: { ...leaf, uris: [`spiffe://${TD}/a`, `spiffe://${TD}/b`] } },
      { name: "a critical SAN, empty subject", spec: { ...leaf, subject: "", sanCritical: true } },
      { name: "an empty subject, non-critical SAN", spec: { ...leaf, subject: "" } },
      { name: "a CA leaf", spec: { ...leaf, ca: true } },
      { name: "basicConstraints without cA", spec: { ...leaf, ca: false } },
      { name: "no basicConstraints", spec: { ...leaf, ca: undefined } },
      { name: "no key usage", spec: { ...leaf, ku: undefined } },
      { name: "a non-critical key usage", spec: { ...leaf, kuCritical: false } },
      { name: "keyEncipherment only", spec: { ...leaf, ku: KU.keyEncipherment } },
      { name: "digitalSignature + keyCertSign", spec: { ...leaf, ku: KU.digitalSignature | KU.keyCertSign } },
      { name: "digitalSignature + cRLSign", spec: { ...leaf, ku: KU.digitalSignature | KU.cRLSign } },
      { name: "every key usage bit", spec: { ...leaf, ku: 0x1ff } },
      {
        name: "decipherOnly (the second byte)",
        spec: { ...leaf, ku: KU.digitalSignature | KU.decipherOnly },
      },
      { name: "an EKU of serverAuth only", spec: { ...leaf, eku: [EKU.serverAuth] } },
      { name: "an EKU with other purposes", spec: { ...leaf, eku: [EKU.codeSigning, EKU.clientAuth, EKU.serverAuth, "1.2.840.113549.1.1.1"] } }, // prettier-ignore
      { name: "validity past 2049 (GeneralizedTime)", spec: { ...leaf, notBefore: new Date(Date.UTC(2049, 11, 31, 23, 59, 59)), notAfter: new Date(Date.UTC(2060, 0, 1)) } }, // prettier-ignore
      { name: "validity before 2000", spec: { ...leaf, notBefore: new Date(Date.UTC(1999, 5, 1)), notAfter: new Date(Date.now() + H) } }, // prettier-ignore
    ];
    for (const { name, spec } of specs) {
      const der = (await mk(spec)).der;
      assert.deepEqual(readCertFields(der), reference(der), name);
    }
  });

  test("refuses malformed DER: every truncation, trailing bytes, an indefinite length, a repeated extension", async () => {
    const der = (await mk(goodLeaf(await rootOf(TD)))).der;
    for (let n = 0; n < der.length; n++) assert.throws(() => readCertFields(der.subarray(0, n)), Error, `cut at ${n}`); // prettier-ignore
    assert.throws(
      () => readCertFields(Buffer.concat([der, Buffer.from([0])])),
      /bytes after the certificate/,
    );
    const indefinite = Buffer.from(der);
    indefinite[1] = 0x80;
    assert.throws(() => readCertFields(indefinite), /indefinite/);
    const twice = await mk({ ...goodLeaf(await rootOf(TD)), ku: undefined });
    const dup = await x509.X509CertificateGenerator.create({
      subject: "O=test",
      issuer: "O=test",
      notBefore: new Date(Date.now() - H),
      notAfter: new Date(Date.now() + H),
      publicKey: twice.keys.publicKey,
      signingKey: twice.keys.privateKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [new x509.KeyUsagesExtension(KU.digitalSignature, true), new x509.KeyUsagesExtension(KU.keyCertSign, true)], // prettier-ignore
    });
    assert.throws(() => readCertFields(Buffer.from(dup.rawData)), /appears twice/);
  });

  test("refuses a keyUsage BIT STRING with unused bits set (@peculiar/x509 masks them: the readers would disagree)", async () => {
    const der = (await mk(goodLeaf(await rootOf(TD)))).der;
    const at = der.indexOf(Buffer.from([0x03, 0x02, 0x07, 0x80])); // digitalSignature, 7 unused bits
    assert.ok(at > 0);
    const bent = Buffer.from(der);
    bent[at + 3] = 0x86; // keyCertSign and cRLSign in the unused bits
    assert.equal(reference(bent).keyUsage?.keyCertSign, false);
    assert.throws(() => readCertFields(bent), /unused bits set/);
  });

  test("refuses an OID whose first subidentifier takes more than one byte (arc 2 with a second arc of 48 or more)", async () => {
    // 2.999.1 encodes its first subidentifier 1079 as 0x88 0x37: read byte by byte it would come
    // out as another OID (2.56.55.1), so the reader refuses it rather than mis-split its arcs.
    const der = (await mk({ ...goodLeaf(await rootOf(TD)), eku: [EKU.serverAuth, EKU.clientAuth, "2.999.1"] })).der; // prettier-ignore
    assert.deepEqual(reference(der).extKeyUsage, [EKU.serverAuth, EKU.clientAuth, "2.999.1"]);
    assert.throws(() => readCertFields(der), /OID whose first subidentifier takes more than one byte/);
  });

  test("a leaf with any one byte changed is never accepted", async () => {
    const root = await rootOf(TD);
    const der = (await mk(goodLeaf(root))).der;
    assert.equal(validateX509Svid([der], [root.der], { trustDomain: TD }).id.path, "/identity/300");
    for (let i = 0; i < der.length; i++) {
      const bent = Buffer.from(der);
      bent[i] = (bent[i] as number) ^ (1 << (i % 8));
      assert.throws(() => validateX509Svid([bent], [root.der], { trustDomain: TD }), /Cannot accept the X\.509-SVID/, `byte ${i}`); // prettier-ignore
    }
  });
});
