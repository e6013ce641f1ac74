#!/usr/bin/env bash
# Debian packages Membrane uses at run time and in its tests. Idempotent.
#   nftables, iproute2             the datapath (nft, ip)
#   iptables                       the NFQUEUE rule of mutual authentication (nft here has no queue statement)
#   socat, iputils-ping            real packets in tests (raw sends, ping)
#   iperf3                         throughput benchmark (npm run bench)
#   etcd-server                    the multi-host store backend and its contract tests
#   prometheus                     promtool, to check the metrics exposition in tests
#   nginx-light                    reference reverse proxy in the proxy benchmark (bench/nginx.ts);
#                                  the bench starts its own instance, never the system service
#   dnsdist                        reference DNS proxy in the same benchmark's DNS lab (bench/proxy-dnsdist.ts);
#                                  likewise its own instance and config, never the system service
#   dnsperf                        the same benchmark's other DNS load generator (--dns-load dnsperf)
#   dnsmasq-base                   the upstream DNS resolver of the toFQDNs tests and `policy test --datapath`
#                                  (the binary only: no system service)
#   openssl                        throwaway certificates of the TLS proxy tests
#   containernetworking-plugins    bridge, ptp, host-local (/usr/lib/cni): membrane-cni chains after them
#   podman                         the real runtime of the CNI tests and benchmark (its CNI backend, private
#                                  state in a temp dir, `--rootfs`: no image pulls)
#   bpftrace                       runtime security (issue 15): tracepoint programs and bpf_send_signal from
#                                  generated scripts, driven as a subprocess (this kernel refuses kprobes/LSM);
#                                  also the process event source where the native one cannot load
#   gcc, libc6-dev                 build the native membrane-cni shim (native/membrane-cni-shim.c, npm run build):
#                                  the installed CNI plugin, ~1 ms of CPU per call instead of Node's ~110 ms;
#                                  the fanotify responder (native/membrane-fanotify.c) that denies file access;
#                                  and the connect guard (native/membrane-connect-guard.c, linux/bpf.h from
#                                  linux-libc-dev, a dependency of libc6-dev): the loader of the cgroup
#                                  connect4/6 programs of TracingPolicies (no clang or libbpf needed); and the
#                                  loader of the native process event source (native/membrane-exec-events.c);
#                                  and the mTLS tunnel's Node-API addon (native/membrane-sockmark.c, SO_MARK),
#                                  against the headers Debian's nodejs ships in /usr/include/node
#   chromium                       the service map's browser test and benchmark (driven by playwright-core,
#                                  test/ui/, bench/ui.ts)
#   protobuf-compiler              protoc, to build the descriptor sets of our .proto declarations (Hubble, SPIFFE,
#                                  Tetragon's events; scripts/gen-*-descriptor.mjs) that tests compare and parse against
#   libprotobuf-dev                the well-known types those declarations import (google/protobuf/timestamp.proto,
#                                  wrappers.proto, struct.proto under /usr/include): protoc alone does not ship them
#   wireguard-go, wireguard-tools  transparent encryption (--encryption wireguard, issue 13): userspace WireGuard
#                                  over TUN where the kernel has no WireGuard module (as here), and `wg`
#   tcpdump                        the encryption tests capture the lab's underlay to prove no plaintext crosses it
#   charon-systemd, strongswan-swanctl, libcharon-extra-plugins, libstrongswan-standard-plugins
#                                  IPsec (--encryption ipsec, issue 13): strongSwan's charon driven over VICI (run
#                                  by the agent without systemd, as nobody with CAP_NET_ADMIN); kernel-libipsec
#                                  (extra plugins) does ESP in userspace where the kernel has no ESP (as here);
#                                  the openssl plugin (standard plugins) gives AES-GCM and x25519; swanctl to debug
set -euo pipefail
PKGS=(nftables iproute2 iptables socat iputils-ping etcd-server prometheus iperf3 nginx-light dnsdist dnsperf dnsmasq-base openssl
  containernetworking-plugins podman bpftrace protobuf-compiler libprotobuf-dev gcc libc6-dev chromium
  wireguard-go wireguard-tools tcpdump charon-systemd strongswan-swanctl libcharon-extra-plugins
  libstrongswan-standard-plugins)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# etcd-server starts a system service on install on some images; we never use it.
systemctl stop etcd 2>/dev/null || true
# charon-systemd enables strongswan.service; the agent runs its own charon per node, never the system one.
systemctl disable --now strongswan 2>/dev/null || true
# Likewise nginx (listens on :80 once installed): stop it only if this run installed it.
if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
  systemctl disable --now nginx 2>/dev/null || true
fi
# And dnsdist (its service listens on 127.0.0.1:53 and ::1:53 once installed).
if [[ " ${missing[*]} " == *" dnsdist "* ]]; then
  systemctl disable --now dnsdist 2>/dev/null || true
fi
# charon's kernel-libipsec opens /dev/net/tun as nobody (CAP_NET_ADMIN only). udev's default rule
# (50-udev-default.rules: KERNEL=="tun", MODE="0666") makes the node 0666 on a normal Debian host; a
# machine without udev keeps the kernel's 0600. Opening it grants nothing alone: creating or
# attaching a TUN device still needs CAP_NET_ADMIN. The agent refuses to start IPsec without it.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi
