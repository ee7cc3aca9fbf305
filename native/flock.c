/*
 * zeo_flock: flock(2) for Node, so zeo-ts takes Data.fs.lock exactly as ZODB does (zc.lockfile calls
 * fcntl.flock(fd, LOCK_EX | LOCK_NB) on Unix). Node has no flock of its own, and fcntl record locks would
 * not exclude a runzeo holding the same file.
 *
 *   flock(fd, exclusive, nonblocking) -> 0 on success, "locked" when another open file holds a conflicting
 *                                        lock (EWOULDBLOCK with nonblocking), else the errno (a number)
 *   unlock(fd)                        -> 0, or the errno
 *
 * A blocking call (nonblocking false) blocks the calling thread, so the event loop; zeo-ts only uses
 * nonblocking locks. Node opens files with O_CLOEXEC, so a lock is never inherited by child processes;
 * it goes away when its file is closed or the process dies.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>

#ifndef _WIN32
#include <sys/file.h>
#endif

#define CHECK(call)                                                                                          \
  do {                                                                                                       \
    if ((call) != napi_ok) return NULL;                                                                      \
  } while (0)

static napi_value errno_value(napi_env env, int err) {
  napi_value out;
  CHECK(napi_create_int32(env, err, &out));
  return out;
}

static int fd_arg(napi_env env, napi_value v, int32_t *fd) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  if (napi_get_value_int32(env, v, fd) != napi_ok || *fd < 0) return 0;
  return 1;
}

static int do_flock(int fd, int op) {
#ifdef _WIN32
  (void)fd;
  (void)op;
  return ENOSYS;
#else
  for (;;) {
    if (flock(fd, op) == 0) return 0;
    if (errno != EINTR) return errno;
  }
#endif
}

static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  bool exclusive = true, nonblocking = true;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !fd_arg(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "flock(fd, exclusive, nonblocking): fd must be a file descriptor");
    return NULL;
  }
  if (argc > 1 && napi_get_value_bool(env, argv[1], &exclusive) != napi_ok) {
    napi_throw_type_error(env, NULL, "flock(fd, exclusive, nonblocking): exclusive must be a boolean");
    return NULL;
  }
  if (argc > 2 && napi_get_value_bool(env, argv[2], &nonblocking) != napi_ok) {
    napi_throw_type_error(env, NULL, "flock(fd, exclusive, nonblocking): nonblocking must be a boolean");
    return NULL;
  }
#ifdef _WIN32
  int err = ENOSYS;
#else
  int err = do_flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (nonblocking ? LOCK_NB : 0));
  if (err == EWOULDBLOCK || err == EAGAIN) {
    napi_value locked;
    CHECK(napi_create_string_utf8(env, "locked", NAPI_AUTO_LENGTH, &locked));
    return locked;
  }
#endif
  return errno_value(env, err);
}

static napi_value js_unlock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !fd_arg(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "unlock(fd): fd must be a file descriptor");
    return NULL;
  }
#ifdef _WIN32
  return errno_value(env, ENOSYS);
#else
  return errno_value(env, do_flock(fd, LOCK_UN));
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"flock", NULL, js_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unlock", NULL, js_unlock, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
