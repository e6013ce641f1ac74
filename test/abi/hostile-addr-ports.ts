/**
 * `{address, port}` values a compromised asker could send the brokers (abi/addr-port.ts), each
 * with why it must be refused. Shared by the guard's own test and the tests that send them to the
 * real broker processes over IPC (where NaN arrives as null: IPC is JSON).
 */
export const HOSTILE_ADDR_PORTS: readonly { readonly name: string; readonly value: unknown }[] = [
  { name: "port NaN", value: { address: "10.0.0.2", port: Number.NaN } },
  { name: "port 65536", value: { address: "10.0.0.2", port: 65536 } },
  { name: "port -1", value: { address: "10.0.0.2", port: -1 } },
  { name: "port 1.5", value: { address: "10.0.0.2", port: 1.5 } },
  { name: 'port "53" (a string)', value: { address: "10.0.0.2", port: "53" } },
  { name: "port missing", value: { address: "10.0.0.2" } },
  { name: "an address with a zone", value: { address: "fe80::1%eth0", port: 53 } },
  { name: "an address with a leading space", value: { address: " 10.0.0.2", port: 53 } },
  { name: "an address with a trailing space", value: { address: "10.0.0.2 ", port: 53 } },
  { name: "a name, not an address", value: { address: "localhost", port: 53 } },
  { name: "an IPv4 address with a leading zero", value: { address: "010.0.0.2", port: 53 } },
  { name: "a huge string (1 MiB)", value: { address: "1".repeat(1 << 20), port: 53 } },
  { name: "an address that is a number", value: { address: 167772162, port: 53 } },
  { name: "null", value: null },
  { name: "an array", value: ["10.0.0.2", 53] },
  { name: "a string", value: "10.0.0.2:53" },
  {
    name: "address and port only inherited (prototype keys)",
    value: Object.create({ address: "10.0.0.2", port: 53 }) as unknown,
  },
  {
    name: "a __proto__ key carrying address and port",
    value: JSON.parse('{"__proto__": {"address": "10.0.0.2", "port": 53}}') as unknown,
  },
];
