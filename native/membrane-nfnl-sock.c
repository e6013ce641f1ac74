/*
 * membrane-nfnl-sock.node: a Node-API addon, the agent's own nfnetlink socket in a node's network
 * namespace (src/datapath/nfnl/socket.ts), so that one nf_tables batch is written and answered
 * without a second process:
 *
 *   open(netnsPath | null) -> fd   a NETLINK_NETFILTER socket made in that namespace: a short-lived
 *                                  thread setns()es there, makes the socket and ends (the socket stays
 *                                  in the namespace it was made in; the agent's threads never move)
 *   batch(fd, bytes) -> Buffer[]   sends one batch to the kernel and returns the datagrams the kernel
 *                                  queued for us meanwhile (its acknowledgements)
 *   close(fd)
 *   inNetns(netnsPath, fn) -> fn()  runs fn with the CALLING thread (the agent's main thread) in that
 *                                  namespace and puts it back before returning, even when fn throws:
 *                                  a socket fn makes (the NFQUEUE reader's, src/auth/nfqueue-socket.ts)
 *                                  stays in the namespace and is polled by the agent's own event loop.
 *                                  If the thread cannot go back, the process aborts (a main thread
 *                                  left in a node namespace would make every later socket there).
 *
 * Why synchronous: the kernel handles a batch sent to nfnetlink inside sendmsg() (nfnetlink_rcv_batch:
 * every message, the commit, the acknowledgements, before sendmsg returns), so the answers are queued
 * when it returns. The writer process (membrane-nfnl) cost two wake-ups per change (the writer's, then
 * the agent's), each a wait for a CPU on a loaded machine. The caller checks every acknowledgement
 * (abi/nft-setelem-wire.ts parseAcks) and treats a missing one as a failure.
 *
 * Nothing else: the bytes are the caller's batch, checked (renumbered) there; no parsing here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef NETLINK_NETFILTER
#define NETLINK_NETFILTER 12
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

/* Largest datagram we read: acknowledgements are small (NETLINK_CAP_ACK: no echoed payload). */
#define DGRAM_MAX 65536
/* At most this many datagrams per batch (a batch of ELEMENTS_PER_MESSAGE-element messages). */
#define DGRAMS_MAX 65536

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s: %s (errno %d)", what, strerror(err), err);
  napi_value code, text, e, n;
  napi_create_string_utf8(env, "NFNL_SOCKET_FAILED", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &e);
  napi_create_int32(env, err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_throw(env, e);
  return NULL;
}

struct opening {
  const char *path; /* NULL: the agent's own namespace */
  int fd;
  int err;
  const char *step;
};

static void *open_in_netns(void *p) {
  struct opening *o = p;
  if (o->path != NULL) {
    int ns = open(o->path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      o->err = errno;
      o->step = "open the namespace";
      return NULL;
    }
    int r = setns(ns, CLONE_NEWNET);
    int e = errno;
    close(ns);
    if (r != 0) {
      o->err = e;
      o->step = "setns";
      return NULL;
    }
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    o->err = errno;
    o->step = "socket";
    return NULL;
  }
  struct sockaddr_nl me = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) {
    o->err = errno;
    o->step = "bind";
    close(fd);
    return NULL;
  }
  int rcv = 4 << 20, snd = 8 << 20, one = 1;
  /* FORCE needs CAP_NET_ADMIN (the agent has it); without it the plain limits apply. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  o->fd = fd;
  return NULL;
}

static napi_value nl_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype t;
  char path[512];
  struct opening o = {.path = NULL, .fd = -1, .err = 0, .step = ""};
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_typeof(env, argv[0], &t) != napi_ok || (t != napi_string && t != napi_null)) {
    napi_throw_type_error(env, "NFNL_SOCKET_USAGE", "open(netnsPath: string | null)");
    return NULL;
  }
  if (t == napi_string) {
    size_t n = 0;
    if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &n) != napi_ok || n == 0 ||
        n >= sizeof path - 1 || path[0] != '/') {
      napi_throw_type_error(env, "NFNL_SOCKET_USAGE", "open: the namespace path must be absolute");
      return NULL;
    }
    o.path = path;
  }
  pthread_t th;
  int r = pthread_create(&th, NULL, open_in_netns, &o);
  if (r != 0) return fail(env, "pthread_create", r);
  pthread_join(th, NULL);
  if (o.fd < 0) return fail(env, o.step, o.err);
  napi_value out;
  napi_create_int32(env, o.fd, &out);
  return out;
}

static int get_fd(napi_env env, napi_value v, int *fd) {
  return napi_get_value_int32(env, v, fd) == napi_ok && *fd >= 0;
}

static napi_value nl_batch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd = -1;
  void *data = NULL;
  size_t len = 0;
  bool isbuf = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      !get_fd(env, argv[0], &fd) || napi_is_buffer(env, argv[1], &isbuf) != napi_ok || !isbuf ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || len == 0) {
    napi_throw_type_error(env, "NFNL_SOCKET_USAGE", "batch(fd: number, bytes: Buffer)");
    return NULL;
  }
  unsigned char *buf = malloc(DGRAM_MAX);
  if (buf == NULL) return fail(env, "malloc", ENOMEM);
  struct sockaddr_nl from;
  /* Whatever an earlier batch left unread is not this batch's answer. */
  for (;;) {
    ssize_t n = recv(fd, buf, DGRAM_MAX, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
  }
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t sent;
  do sent = sendto(fd, data, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    int e = errno;
    free(buf);
    return fail(env, "sendto", e);
  }
  if ((size_t)sent != len) {
    free(buf);
    return fail(env, "sendto (short write)", EIO);
  }
  napi_value out;
  napi_create_array(env, &out);
  uint32_t count = 0;
  for (;;) {
    struct iovec iov = {.iov_base = buf, .iov_len = DGRAM_MAX};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) {
      /* ENOBUFS: the kernel dropped answers; the caller cannot know the outcome. */
      int e = errno;
      free(buf);
      return fail(env, "recvmsg", e);
    }
    if (mh.msg_flags & MSG_TRUNC) {
      free(buf);
      return fail(env, "recvmsg (an answer larger than the read buffer)", EMSGSIZE);
    }
    if (from.nl_pid != 0) continue; /* only the kernel answers */
    if (count >= DGRAMS_MAX) {
      free(buf);
      return fail(env, "recvmsg (too many answers)", E2BIG);
    }
    napi_value b;
    void *copy;
    if (napi_create_buffer_copy(env, (size_t)n, buf, &copy, &b) != napi_ok) {
      free(buf);
      return fail(env, "napi_create_buffer_copy", ENOMEM);
    }
    napi_set_element(env, out, count++, b);
  }
  free(buf);
  return out;
}

static napi_value nl_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || !get_fd(env, argv[0], &fd)) {
    napi_throw_type_error(env, "NFNL_SOCKET_USAGE", "close(fd: number)");
    return NULL;
  }
  close(fd);
  return NULL;
}

static napi_value nl_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_valuetype t0, t1;
  char path[512];
  size_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_typeof(env, argv[0], &t0) != napi_ok || t0 != napi_string ||
      napi_typeof(env, argv[1], &t1) != napi_ok || t1 != napi_function ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &n) != napi_ok || n == 0 ||
      n >= sizeof path - 1 || path[0] != '/') {
    napi_throw_type_error(env, "NFNL_SOCKET_USAGE", "inNetns(netnsPath: absolute string, fn: function)");
    return NULL;
  }
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return fail(env, "open the agent's own namespace", errno);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    int e = errno;
    close(self);
    return fail(env, "open the namespace", e);
  }
  if (setns(ns, CLONE_NEWNET) != 0) {
    int e = errno;
    close(ns);
    close(self);
    return fail(env, "setns", e);
  }
  close(ns);
  napi_value global, result = NULL;
  napi_status st = napi_get_global(env, &global);
  if (st == napi_ok) st = napi_call_function(env, global, argv[1], 0, NULL, &result);
  int back = setns(self, CLONE_NEWNET);
  int e = errno;
  close(self);
  if (back != 0) {
    fprintf(stderr, "membrane-nfnl-sock: cannot return to the agent's namespace: %s\n", strerror(e));
    abort();
  }
  if (st != napi_ok) return NULL; /* fn threw: the exception propagates */
  return result;
}

NAPI_MODULE_INIT() {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"open", nl_open}, {"batch", nl_batch}, {"close", nl_close}, {"inNetns", nl_in_netns}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}
