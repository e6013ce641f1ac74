/*
 * membrane-sockmark.node: a Node-API addon with one function, for the mTLS node tunnel's
 * privileged broker (src/encryption/mtls/broker.ts):
 *
 *   markedSocket(family 4|6, mark[, bind]) -> fd of a new, unconnected, non-blocking TCP socket
 *   whose SO_MARK is `mark` (the source identity the receiving node's kernel policy judges);
 *   with `bind` true it is also bound to the wildcard address, port 0: the kernel gives it its
 *   local port now, before any packet (the agent learns which connection it will be first).
 *   localPort(fd) -> the port a socket is bound to (getsockname).
 *
 * Node has no setsockopt; SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW), which only the broker
 * keeps. The broker wraps the fd in a net.Socket and hands it, unconnected, to the unprivileged
 * tunnel process, which connects it. Nothing else: no connect, no I/O here.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, "SOCKMARK_FAILED", msg);
  return NULL;
}

static napi_value marked_socket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t family = 0;
  uint32_t mark = 0;
  bool bind_any = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || argc > 3 ||
      (argc == 3 && napi_get_value_bool(env, argv[2], &bind_any) != napi_ok) ||
      napi_get_value_int32(env, argv[0], &family) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &mark) != napi_ok || (family != 4 && family != 6)) {
    napi_throw_type_error(env, "SOCKMARK_USAGE", "markedSocket(family: 4 | 6, mark: uint32, bind?: boolean)");
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket", errno);
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    int e = errno;
    close(fd);
    return fail(env, "setsockopt SO_MARK", e);
  }
  if (bind_any) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == 6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_any;
      len = sizeof *a;
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_ANY);
      len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
      int e = errno;
      close(fd);
      return fail(env, "bind", e);
    }
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value local_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "SOCKMARK_USAGE", "localPort(fd: int)");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return fail(env, "getsockname", errno);
  uint16_t port = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port;
  napi_value out;
  napi_create_uint32(env, ntohs(port), &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "markedSocket", NAPI_AUTO_LENGTH, marked_socket, NULL, &fn);
  napi_set_named_property(env, exports, "markedSocket", fn);
  napi_create_function(env, "localPort", NAPI_AUTO_LENGTH, local_port, NULL, &fn);
  napi_set_named_property(env, exports, "localPort", fn);
  return exports;
}
