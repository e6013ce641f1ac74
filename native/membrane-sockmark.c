/*
 * membrane-sockmark.node: a Node-API addon with one function, for the mTLS node tunnel's
 * privileged broker (src/encryption/mtls/broker.ts):
 *
 *   markedSocket(family 4|6, mark) -> fd of a new, unconnected, non-blocking TCP socket whose
 *   SO_MARK is `mark` (the source identity the receiving node's kernel policy judges).
 *
 * Node has no setsockopt; SO_MARK needs CAP_NET_ADMIN (or CAP_NET_RAW), which only the broker
 * keeps. The broker wraps the fd in a net.Socket and hands it, unconnected, to the unprivileged
 * tunnel process, which connects it. Nothing else: no connect, no I/O here.
 */
#define _GNU_SOURCE
#include <errno.h>
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
  size_t argc = 2;
  napi_value argv[2];
  int32_t family = 0;
  uint32_t mark = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &family) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &mark) != napi_ok || (family != 4 && family != 6)) {
    napi_throw_type_error(env, "SOCKMARK_USAGE", "markedSocket(family: 4 | 6, mark: uint32)");
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, "socket", errno);
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    int e = errno;
    close(fd);
    return fail(env, "setsockopt SO_MARK", e);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "markedSocket", NAPI_AUTO_LENGTH, marked_socket, NULL, &fn);
  napi_set_named_property(env, exports, "markedSocket", fn);
  return exports;
}
