/*
 * membrane-nfnl, the agent's set-element writer: the native form of
 * src/datapath/nfnl/child.ts, with the same frames in and the same answers out.
 *
 *   agent --stdin:  u32le length of what follows, u32le id, one nf_tables batch--> membrane-nfnl
 *         <-stdout: {"id":n,"ok":true} | {"id":n,"ok":false,"errno":e,"error":"..."}  (one line each)
 *
 * Why native: the writer is started when the agent (re)starts, and the agent's
 * first policy change after a restart waited for it. A Node process needs
 * 50-300 ms of CPU to boot on this 2-core machine (more while the agent's
 * background check and its parser worker warm up beside it); this program is
 * ready in about a millisecond. Started through nsenter in the node's network
 * namespace, as the Node writer was (src/datapath/nfnl/setelem.ts chooses).
 *
 * Each frame is one atomic batch made by the agent (abi/nft-setelem-wire.ts,
 * abi/nft-object-wire.ts). It is checked as renumberBatch() checks it (one
 * BATCH_BEGIN first, one BATCH_END last, whole messages, only chain, rule, set
 * and element creations or deletions in between: never a table, flowtable or
 * object), its messages are numbered in this process's own sequence, it is
 * sent, and the acknowledgements of its messages are awaited (every message
 * asks for one). The first error answers the batch (the kernel applied none of
 * it). Frames are handled one at a time, in order; the program exits when its
 * stdin closes (the agent went away), and is killed with its parent.
 *
 * Least privilege: after it opened its socket it keeps CAP_NET_ADMIN only (the
 * kernel checks it on every batch) and sets no_new_privs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef NETLINK_NETFILTER
#define NETLINK_NETFILTER 12
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

/* A frame longer than this is not one the agent sends (setelem.ts has the same bound). */
#define MAX_FRAME (256u << 20)
#define SUBSYS_NFTABLES 10
#define BATCH_BEGIN 0x10
#define BATCH_END 0x11
#define SOCK_BUF (4 << 20)

static int nl = -1;
static uint32_t seq = 1;

/* NEW/DEL CHAIN (3, 5), RULE (6, 8), SET (9, 11), SETELEM (12, 14): as WRITABLE in nft-setelem-wire.ts. */
static int writable(uint16_t type) {
  if ((type >> 8) != SUBSYS_NFTABLES) return 0;
  switch (type & 0xff) {
  case 3: case 5: case 6: case 8: case 9: case 11: case 12: case 14:
    return 1;
  default:
    return 0;
  }
}

static void say_ok(uint32_t id) {
  printf("{\"id\":%u,\"ok\":true}\n", id);
  fflush(stdout);
}

/* `what` is one of this file's fixed texts (no quote or backslash in any). */
static void say_err(uint32_t id, int err, const char *what) {
  if (err != 0)
    printf("{\"id\":%u,\"ok\":false,\"errno\":%d,\"error\":\"%s (errno %d)\"}\n", id, err, what, err);
  else
    printf("{\"id\":%u,\"ok\":false,\"error\":\"%s\"}\n", id, what);
  fflush(stdout);
}

/* 1: read n bytes; 0: end of input before the first byte; -1: error or end inside. */
static int read_full(void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(0, (char *)buf + got, n - got);
    if (r == 0) return got == 0 ? 0 : -1;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)r;
  }
  return 1;
}

static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Numbers the batch's messages from `first`; the count of messages, or -1 with *why set. */
static long renumber(unsigned char *b, size_t len, uint32_t first, const char **why) {
  size_t o = 0;
  long n = 0;
  uint32_t s = first;
  while (o < len) {
    if (len - o < NLMSG_HDRLEN) return *why = "a batch ends inside a message header", -1;
    uint32_t ml = rd32(b + o);
    if (ml < NLMSG_HDRLEN || ml > len - o || ml % 4 != 0) return *why = "a batch message has a bad length", -1;
    uint16_t type = rd16(b + o + 4);
    int edge = type == BATCH_BEGIN || type == BATCH_END;
    if (!edge && !writable(type)) return *why = "a batch holds a message that is not a chain, rule, set or element change", -1;
    if ((n == 0) != (type == BATCH_BEGIN)) return *why = "a batch must begin with BATCH_BEGIN", -1;
    memcpy(b + o + 8, &s, 4);
    s++;
    o += ml;
    n++;
    if (type == BATCH_END && o != len) return *why = "a batch goes on after BATCH_END", -1;
    if (o == len && type != BATCH_END) return *why = "a batch must end with BATCH_END", -1;
  }
  if (n == 0) return *why = "an empty batch", -1;
  return n;
}

/* Sends one renumbered batch and waits for its answers: 0, a positive errno, or -1 (socket failed, *why). */
static int send_batch(const unsigned char *b, size_t len, uint32_t first, long count, const char **why) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  for (;;) {
    ssize_t r = sendto(nl, b, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
    if (r >= 0) break;
    if (errno == EINTR) continue;
    *why = "cannot send the batch";
    return -errno;
  }
  uint32_t last = first + (uint32_t)count - 1;
  long waiting = count - 2; /* every message between BEGIN and END is acknowledged */
  static unsigned char rbuf[1 << 16];
  while (waiting > 0) {
    ssize_t r = recv(nl, rbuf, sizeof rbuf, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      *why = errno == ENOBUFS ? "acknowledgements were lost (receive buffer full)" : "cannot read the answers";
      return -errno;
    }
    size_t o = 0;
    while ((size_t)r - o >= NLMSG_HDRLEN) {
      const struct nlmsghdr *h = (const struct nlmsghdr *)(rbuf + o);
      if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > (size_t)r - o) break;
      if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_len >= NLMSG_HDRLEN + 4 && h->nlmsg_seq >= first &&
          h->nlmsg_seq <= last) {
        int32_t e;
        memcpy(&e, rbuf + o + NLMSG_HDRLEN, 4);
        if (e != 0) return -e; /* the kernel applied none of the batch */
        if (h->nlmsg_seq != first && h->nlmsg_seq != last) waiting--;
      }
      o += NLMSG_ALIGN(h->nlmsg_len);
    }
  }
  return 0;
}

/* Keeps CAP_NET_ADMIN only (permitted and effective), nothing inheritable. */
static int keep_net_admin(void) {
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  data[0].permitted = data[0].effective = 1u << CAP_NET_ADMIN;
  return (int)syscall(SYS_capset, &hdr, data);
}

static void set_buf(int force, int plain, int size) {
  if (setsockopt(nl, SOL_SOCKET, force, &size, sizeof size) != 0)
    (void)setsockopt(nl, SOL_SOCKET, plain, &size, sizeof size);
}

int main(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (nl < 0) {
    say_err(0, errno, "cannot open an nfnetlink socket");
    return 2;
  }
  set_buf(SO_SNDBUFFORCE, SO_SNDBUF, SOCK_BUF);
  set_buf(SO_RCVBUFFORCE, SO_RCVBUF, SOCK_BUF);
  int one = 1;
  /* Acknowledgements of refused messages without the message copied back. */
  (void)setsockopt(nl, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct sockaddr_nl me = {.nl_family = AF_NETLINK};
  if (bind(nl, (struct sockaddr *)&me, sizeof me) != 0) {
    say_err(0, errno, "cannot bind the nfnetlink socket");
    return 2;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || keep_net_admin() != 0) {
    say_err(0, errno, "cannot drop privileges");
    return 2;
  }
  for (;;) {
    unsigned char head[8];
    int h = read_full(head, sizeof head);
    if (h == 0) return 0;
    if (h < 0) return 2;
    uint32_t len = rd32(head), id = rd32(head + 4);
    if (len < 4 || len > MAX_FRAME) {
      say_err(0, 0, "a request frame of a bad length");
      return 2;
    }
    size_t blen = len - 4;
    unsigned char *b = malloc(blen > 0 ? blen : 1);
    if (b == NULL) {
      say_err(id, ENOMEM, "cannot hold the batch");
      return 2;
    }
    if (read_full(b, blen) != 1 && blen > 0) {
      free(b);
      return 2;
    }
    const char *why = NULL;
    long count = renumber(b, blen, seq, &why);
    if (count < 0) {
      say_err(id, 0, why);
      free(b);
      continue;
    }
    uint32_t first = seq;
    seq += (uint32_t)count;
    if (count <= 2) {
      say_ok(id); /* BEGIN and END only: nothing to apply */
      free(b);
      continue;
    }
    int r = send_batch(b, blen, first, count, &why);
    free(b);
    if (r == 0)
      say_ok(id);
    else if (r > 0)
      say_err(id, r, "the kernel refused the batch");
    else {
      say_err(id, -r, why);
      return 2;
    }
  }
}
