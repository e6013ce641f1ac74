/** Splits concatenated DER certificates (a Workload API bundle or chain) into one buffer each. */
export function splitDer(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < b.length) {
    if (b[i] !== 0x30) throw new Error(`not a DER SEQUENCE at ${i}`);
    const l0 = b[i + 1] ?? 0;
    let len = l0;
    let hdr = 2;
    if (l0 & 0x80) {
      const n = l0 & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + (b[i + 2 + k] ?? 0);
      hdr = 2 + n;
    }
    out.push(b.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
}
