/*
 * membrane-netns, the agent's namespace helper: one long-lived process that
 * makes endpoint namespaces and configures links, addresses and routes inside
 * any named namespace, with setns(2) and rtnetlink, spawning nothing.
 *
 *   agent --stdin:  "<id> add NAME" | "<id> ns NAME up IF addr IF CIDR 1 route DST DEV GW|- l|u ..."-->
 *         <-stdout: "<id> ok" | "<id> err <what failed>: <errno text>"---------------------------------
 *
 * On this machine a process start (fork+exec of ip, nsenter, sh) costs ~10 ms
 * and an endpoint create used five; this helper does the same work in well
 * under a millisecond per step (src/datapath/netns-native.ts drives it).
 *
 *   add NAME     what `ip netns add` does (/run/netns shared, the file, unshare(CLONE_NEWNET),
 *                bind mount of the new namespace on it), then the new namespace's sysctls
 *                (accept_dad and rp_filter of `all` and `default` = 0, before it has a device)
 *   ns NAME|-    enter namespace NAME (- = the helper's own) for the ops that follow
 *   up IF                       RTM_NEWLINK  IFF_UP
 *   addr IF CIDR 0|1            RTM_NEWADDR  CREATE|REPLACE, IFA_LOCAL+IFA_ADDRESS (1 = IFA_F_NODAD)
 *   route DST|default DEV GW|- l|u   RTM_NEWROUTE CREATE|REPLACE, main table, proto boot, scope link/universe
 *
 * The same messages as src/datapath/rtnl-ops.ts. Steps run in order and stop
 * at the first refusal; after every request the helper is back in its own
 * namespace and holds no other (a process inside a namespace would keep it
 * alive after `ip netns del`). Input is checked word by word (names, ifnames,
 * addresses) and a request with a bad word is refused whole before any step
 * runs; a line over 4 KiB ends the helper (its rest would be read as a
 * request). It exits when its stdin closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUN_DIR "/run/netns"
#define MAX_LINE 4096
#define MAX_WORDS 256

static int own_ns = -1;
static int nl = -1;
static unsigned seq = 1;
static char errbuf[600];

static int fail(const char *what, const char *arg, int err) {
  snprintf(errbuf, sizeof errbuf, "%s %s: %s", what, arg, strerror(err));
  return -1;
}

static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 200 || s[0] == '-' || s[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

static int ifname_ok(const char *s) { return strlen(s) < IFNAMSIZ && name_ok(s); }

static void close_nl(void) {
  if (nl >= 0) close(nl);
  nl = -1;
}

/* The rtnetlink socket of the namespace the helper is in now (a socket speaks for the one it was opened in). */
static int rtnl(void) {
  if (nl < 0) nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  return nl;
}

static int enter(const char *name) {
  close_nl();
  if (strcmp(name, "-") == 0) return setns(own_ns, CLONE_NEWNET) == 0 ? 0 : fail("setns", "(own)", errno);
  char path[256];
  snprintf(path, sizeof path, RUN_DIR "/%s", name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open netns", name, errno);
  int r = setns(fd, CLONE_NEWNET);
  int e = errno;
  close(fd);
  return r == 0 ? 0 : fail("setns", name, e);
}

static int write_file(const char *path, const char *v) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, v, strlen(v));
  int e = errno;
  close(fd);
  errno = e;
  return n == (ssize_t)strlen(v) ? 0 : -1;
}

static const char *const SYSCTLS[] = {
    "/proc/sys/net/ipv6/conf/all/accept_dad",
    "/proc/sys/net/ipv6/conf/default/accept_dad",
    "/proc/sys/net/ipv4/conf/all/rp_filter",
    "/proc/sys/net/ipv4/conf/default/rp_filter",
};

/* `ip netns add NAME` (iproute2's netns_add), then the sysctls inside; undone on failure. */
static int add_netns(const char *name) {
  char path[256];
  snprintf(path, sizeof path, RUN_DIR "/%s", name);
  if (mkdir(RUN_DIR, 0755) != 0 && errno != EEXIST) return fail("mkdir", RUN_DIR, errno);
  /* /run/netns a shared mount, so the bind mounts show in every mount namespace that has it. */
  while (mount("", RUN_DIR, "none", MS_SHARED | MS_REC, NULL) != 0) {
    if (errno != EINVAL || mount(RUN_DIR, RUN_DIR, "none", MS_BIND | MS_REC, NULL) != 0)
      return fail("mount --make-shared", RUN_DIR, errno);
  }
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return fail("create", path, errno);
  close(fd);
  close_nl();
  int r = -1;
  if (unshare(CLONE_NEWNET) != 0) {
    fail("unshare(CLONE_NEWNET) for", name, errno);
  } else if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) != 0) {
    fail("bind mount", path, errno);
  } else {
    r = 0;
    for (size_t i = 0; i < sizeof SYSCTLS / sizeof SYSCTLS[0] && r == 0; i++) {
      if (write_file(SYSCTLS[i], "0") != 0) {
        fail("write 0 to", SYSCTLS[i], errno);
        umount2(path, MNT_DETACH);
        r = -1;
      }
    }
  }
  if (r != 0) unlink(path);
  if (setns(own_ns, CLONE_NEWNET) != 0) {
    /* Cannot get home: answer, then exit so that nothing runs in the wrong namespace. */
    printf("0 err setns back: %s\n", strerror(errno));
    fflush(stdout);
    _exit(3);
  }
  return r;
}

static void put_attr(char *buf, size_t *len, unsigned short type, const void *data, size_t n) {
  struct rtattr *a = (struct rtattr *)(buf + NLMSG_ALIGN(*len));
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(n);
  memcpy(RTA_DATA(a), data, n);
  *len = NLMSG_ALIGN(*len) + RTA_ALIGN(a->rta_len);
}

/* Sends one request and reads its ack. */
static int talk(struct nlmsghdr *h, const char *what, const char *arg) {
  int s = rtnl();
  if (s < 0) return fail("netlink socket for", what, errno);
  h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  h->nlmsg_seq = ++seq;
  if (send(s, h, h->nlmsg_len, 0) != (ssize_t)h->nlmsg_len) return fail(what, arg, errno);
  char buf[8192];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(what, arg, errno);
    }
    for (struct nlmsghdr *m = (struct nlmsghdr *)buf; NLMSG_OK(m, (size_t)n); m = NLMSG_NEXT(m, n)) {
      if (m->nlmsg_seq != h->nlmsg_seq || m->nlmsg_type != NLMSG_ERROR) continue;
      int err = ((struct nlmsgerr *)NLMSG_DATA(m))->error;
      return err == 0 ? 0 : fail(what, arg, -err);
    }
  }
}

static int ifindex(const char *ifname) {
  int i = (int)if_nametoindex(ifname);
  if (i == 0) fail("no link", ifname, errno);
  return i;
}

static int link_up(const char *ifname) {
  int idx = ifindex(ifname);
  if (idx == 0) return -1;
  char buf[256] = {0};
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  h->nlmsg_type = RTM_NEWLINK;
  h->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
  struct ifinfomsg *i = NLMSG_DATA(h);
  i->ifi_index = idx;
  i->ifi_flags = IFF_UP;
  i->ifi_change = IFF_UP;
  return talk(h, "link set up", ifname);
}

/* An address or "a/len" into bytes, family and prefix length (-1: none given). */
static int parse_addr(const char *s, unsigned char out[16], int *family, int *len) {
  char a[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof a) return -1;
  memcpy(a, s, n);
  a[n] = 0;
  *family = strchr(a, ':') ? AF_INET6 : AF_INET;
  if (inet_pton(*family, a, out) != 1) return -1;
  *len = -1;
  if (slash) {
    char *end;
    long l = strtol(slash + 1, &end, 10);
    if (*end != 0 || end == slash + 1 || l < 0 || l > (*family == AF_INET ? 32 : 128)) return -1;
    *len = (int)l;
  }
  return 0;
}

static int addr_add(const char *ifname, const char *cidr, int nodad) {
  unsigned char a[16];
  int family, plen;
  if (parse_addr(cidr, a, &family, &plen) != 0) return fail("bad address", cidr, EINVAL);
  int idx = ifindex(ifname);
  if (idx == 0) return -1;
  size_t alen = family == AF_INET ? 4 : 16;
  char buf[512] = {0};
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  h->nlmsg_type = RTM_NEWADDR;
  h->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  size_t len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  struct ifaddrmsg *m = NLMSG_DATA(h);
  m->ifa_family = (unsigned char)family;
  m->ifa_prefixlen = (unsigned char)(plen < 0 ? (int)alen * 8 : plen);
  m->ifa_flags = nodad ? IFA_F_NODAD : 0;
  m->ifa_index = (unsigned)idx;
  put_attr(buf, &len, IFA_LOCAL, a, alen);
  put_attr(buf, &len, IFA_ADDRESS, a, alen);
  if (nodad) {
    unsigned f = IFA_F_NODAD;
    put_attr(buf, &len, IFA_FLAGS, &f, sizeof f);
  }
  h->nlmsg_len = (unsigned)len;
  return talk(h, "addr replace", cidr);
}

static int route_add(const char *dst, const char *dev, const char *gw, const char *scope) {
  unsigned char d[16], g[16];
  int dfam = 0, gfam = 0, dlen = 0, glen;
  int is_default = strcmp(dst, "default") == 0;
  if (!is_default && parse_addr(dst, d, &dfam, &dlen) != 0) return fail("bad route", dst, EINVAL);
  int has_gw = strcmp(gw, "-") != 0;
  if (has_gw && (parse_addr(gw, g, &gfam, &glen) != 0 || glen >= 0)) return fail("bad gateway", gw, EINVAL);
  int family = is_default ? gfam : dfam;
  if (family == 0 || (has_gw && gfam != family)) return fail("bad route", dst, EINVAL);
  if (!is_default && dlen < 0) dlen = family == AF_INET ? 32 : 128;
  int idx = ifindex(dev);
  if (idx == 0) return -1;
  char buf[512] = {0};
  struct nlmsghdr *h = (struct nlmsghdr *)buf;
  h->nlmsg_type = RTM_NEWROUTE;
  h->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  size_t len = NLMSG_LENGTH(sizeof(struct rtmsg));
  struct rtmsg *r = NLMSG_DATA(h);
  r->rtm_family = (unsigned char)family;
  r->rtm_dst_len = (unsigned char)(is_default ? 0 : dlen);
  r->rtm_table = RT_TABLE_MAIN;
  r->rtm_protocol = RTPROT_BOOT;
  r->rtm_scope = scope[0] == 'l' ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  r->rtm_type = RTN_UNICAST;
  size_t alen = family == AF_INET ? 4 : 16;
  if (!is_default) put_attr(buf, &len, RTA_DST, d, alen);
  if (has_gw) put_attr(buf, &len, RTA_GATEWAY, g, alen);
  put_attr(buf, &len, RTA_OIF, &idx, sizeof idx);
  h->nlmsg_len = (unsigned)len;
  return talk(h, "route replace", dst);
}

/* How many words follow each step's keyword; 0 = not a step. */
static int arity(const char *w) {
  if (strcmp(w, "add") == 0 || strcmp(w, "ns") == 0 || strcmp(w, "up") == 0) return 1;
  if (strcmp(w, "addr") == 0) return 3;
  if (strcmp(w, "route") == 0) return 4;
  return 0;
}

/* Checks every word of a request before anything runs. */
static int check(char **w, int n) {
  for (int i = 0; i < n;) {
    int k = arity(w[i]);
    if (k == 0) return fail("unknown step", w[i], EINVAL);
    if (i + k >= n) return fail("missing words after", w[i], EINVAL);
    const char *s = w[i];
    if ((strcmp(s, "add") == 0 && !name_ok(w[i + 1])) ||
        (strcmp(s, "ns") == 0 && strcmp(w[i + 1], "-") != 0 && !name_ok(w[i + 1])))
      return fail("bad namespace name", w[i + 1], EINVAL);
    if ((strcmp(s, "up") == 0 || strcmp(s, "addr") == 0) && !ifname_ok(w[i + 1]))
      return fail("bad interface name", w[i + 1], EINVAL);
    if (strcmp(s, "addr") == 0 && strcmp(w[i + 3], "0") != 0 && strcmp(w[i + 3], "1") != 0)
      return fail("bad nodad flag", w[i + 3], EINVAL);
    if (strcmp(s, "route") == 0 &&
        (!ifname_ok(w[i + 2]) || (strcmp(w[i + 4], "l") != 0 && strcmp(w[i + 4], "u") != 0)))
      return fail("bad route device or scope", w[i + 2], EINVAL);
    unsigned char a[16];
    int fam, len;
    if (strcmp(s, "addr") == 0 && parse_addr(w[i + 2], a, &fam, &len) != 0)
      return fail("bad address", w[i + 2], EINVAL);
    if (strcmp(s, "route") == 0 && strcmp(w[i + 1], "default") != 0 && parse_addr(w[i + 1], a, &fam, &len) != 0)
      return fail("bad route", w[i + 1], EINVAL);
    if (strcmp(s, "route") == 0 && strcmp(w[i + 3], "-") != 0 && (parse_addr(w[i + 3], a, &fam, &len) != 0 || len >= 0))
      return fail("bad gateway", w[i + 3], EINVAL);
    i += k + 1;
  }
  return 0;
}

static int run(char **w, int n) {
  if (check(w, n) != 0) return -1;
  int r = 0;
  for (int i = 0; i < n && r == 0; i += arity(w[i]) + 1) {
    const char *s = w[i];
    if (strcmp(s, "add") == 0) r = add_netns(w[i + 1]);
    else if (strcmp(s, "ns") == 0) r = enter(w[i + 1]);
    else if (strcmp(s, "up") == 0) r = link_up(w[i + 1]);
    else if (strcmp(s, "addr") == 0) r = addr_add(w[i + 1], w[i + 2], w[i + 3][0] == '1');
    else r = route_add(w[i + 1], w[i + 2], w[i + 3], w[i + 4]);
  }
  close_nl();
  if (setns(own_ns, CLONE_NEWNET) != 0) {
    printf("0 err setns back: %s\n", strerror(errno));
    fflush(stdout);
    _exit(3);
  }
  return r;
}

int main(void) {
  own_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own_ns < 0) {
    perror("membrane-netns: open /proc/self/ns/net");
    return 2;
  }
  char line[MAX_LINE + 2];
  while (fgets(line, sizeof line, stdin) != NULL) {
    size_t n = strlen(line);
    if (n == 0 || line[n - 1] != '\n') {
      printf("0 err line over %d bytes\n", MAX_LINE);
      fflush(stdout);
      return 4; /* the rest of the line would be read as a request */
    }
    line[n - 1] = 0;
    char *w[MAX_WORDS];
    int nw = 0;
    for (char *t = strtok(line, " "); t != NULL && nw < MAX_WORDS; t = strtok(NULL, " ")) w[nw++] = t;
    char *end = "";
    unsigned long id = nw > 0 ? strtoul(w[0], &end, 10) : 0;
    if (nw == 0 || *end != 0) {
      printf("0 err bad request\n");
    } else if (nw < 2 || nw == MAX_WORDS) {
      /* With its id, so the caller's request fails now instead of waiting for its safety net. */
      printf("%lu err bad request: %s\n", id, nw < 2 ? "no step" : "too many words");
    } else if (run(w + 1, nw - 1) == 0) {
      printf("%lu ok\n", id);
    } else {
      printf("%lu err %s\n", id, errbuf);
    }
    fflush(stdout);
  }
  return 0;
}
