// agent_native: the few Linux syscalls the guest agent needs (as PID 1) that
// Node does not expose: child subreaper, targeted waitpid, close-on-exec,
// mount, hostname, reboot, kernel module loading and the wall clock.
//
// Plain C against node_api.h. N-API version 8 is a stable ABI, so the same
// .node file loads on Node 20, 22 and 24 without a rebuild.
#define _GNU_SOURCE  // strerrorname_np, syscall
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// An N-API call failed. Usually a JS exception is already pending; if not,
// throw one so the caller never sees a silent `undefined`.
static napi_value napi_failed(napi_env env) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);  // read before the next call resets it
  const char *msg = info && info->error_message ? info->error_message : "N-API call failed";
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, msg);
  return NULL;
}

#define CHECK(call) \
  do { if ((call) != napi_ok) return napi_failed(env); } while (0)

// Throw Error("<syscall> <args>: <strerror>") carrying .code/.errno/.syscall,
// the same shape as Node's own system errors, so callers can test err.code.
// .errno is the positive kernel value (== os.constants.errno.X).
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char args[4096], msg[4608];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(msg, sizeof msg, "%s %s: %s", syscall, args, strerror(err));
  const char *name = strerrorname_np(err);

  napi_value code, message, error, errno_v, syscall_v;
  CHECK(napi_create_string_utf8(env, name ? name : "UNKNOWN", NAPI_AUTO_LENGTH, &code));
  CHECK(napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message));
  CHECK(napi_create_error(env, code, message, &error));  // also sets .code
  CHECK(napi_create_int32(env, err, &errno_v));
  CHECK(napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v));
  CHECK(napi_set_named_property(env, error, "errno", errno_v));
  CHECK(napi_set_named_property(env, error, "syscall", syscall_v));
  napi_throw(env, error);
  return NULL;
}

// Missing arguments come back as `undefined` and fail the type checks below.
static bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok;
}

// An integral JS number in [min, max]; anything else (NaN, 1.5, "3") is a
// TypeError rather than a silent truncation into a wrong pid or fd.
static bool get_int(napi_env env, napi_value v, const char *what, int64_t min, int64_t max, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, v, &d) != napi_ok ||
      !(d >= (double)min && d <= (double)max) || (double)(int64_t)d != d) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer in [%lld, %lld]", what, (long long)min, (long long)max);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

// A JS string as a malloc'd C string (caller frees). Embedded NULs are
// rejected: C would silently cut the path short at the first one.
static char *get_str(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  size_t len = 0;
  char *s = NULL;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
      napi_get_value_string_utf8(env, v, NULL, 0, &len) == napi_ok && (s = malloc(len + 1)) &&
      napi_get_value_string_utf8(env, v, s, len + 1, &len) == napi_ok && strlen(s) == len)
    return s;
  free(s);
  char msg[128];
  snprintf(msg, sizeof msg, "%s must be a string without NUL characters", what);
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value set_child_subreaper(napi_env env, napi_callback_info info) {
  (void)info;
  // Orphaned grandchildren (daemonizing container processes) get reparented
  // to us instead of to PID 1 of the namespace, so we can reap them.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
    return throw_errno(env, errno, "prctl", "PR_SET_CHILD_SUBREAPER");
  return NULL;
}

static napi_value is_child_subreaper(napi_env env, napi_callback_info info) {
  (void)info;
  int on = 0;
  if (prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0) < 0)
    return throw_errno(env, errno, "prctl", "PR_GET_CHILD_SUBREAPER");
  napi_value r;
  CHECK(napi_get_boolean(env, on != 0, &r));
  return r;
}

static napi_value do_waitpid(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t pid;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  // Only one explicit pid: waitpid(-1) or (0) would also reap children that
  // child_process/libuv are waiting for and steal their exit statuses.
  if (!get_int(env, argv[0], "pid", 1, INT32_MAX, &pid)) return NULL;

  int st = 0;
  pid_t r;
  do r = waitpid((pid_t)pid, &st, WNOHANG); while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "waitpid", "%lld", (long long)pid);

  napi_value out, v_pid, v_code, v_sig, v_core;
  if (r == 0) {  // still running
    CHECK(napi_get_null(env, &out));
    return out;
  }
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, r, &v_pid));
  if (WIFEXITED(st)) {
    CHECK(napi_create_int32(env, WEXITSTATUS(st), &v_code));
    CHECK(napi_get_null(env, &v_sig));
  } else {  // without WUNTRACED/WCONTINUED the only other case is a signal
    CHECK(napi_get_null(env, &v_code));
    CHECK(napi_create_int32(env, WTERMSIG(st), &v_sig));
  }
  CHECK(napi_get_boolean(env, WIFSIGNALED(st) && WCOREDUMP(st), &v_core));
  CHECK(napi_set_named_property(env, out, "pid", v_pid));
  CHECK(napi_set_named_property(env, out, "exitCode", v_code));
  CHECK(napi_set_named_property(env, out, "signal", v_sig));
  CHECK(napi_set_named_property(env, out, "coreDumped", v_core));
  return out;
}

static napi_value get_cloexec(napi_env env, napi_callback_info info) {
  napi_value argv[1], r;
  int64_t fd;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  int flags = fcntl((int)fd, F_GETFD);
  if (flags < 0) return throw_errno(env, errno, "fcntl", "%d F_GETFD", (int)fd);
  CHECK(napi_get_boolean(env, (flags & FD_CLOEXEC) != 0, &r));
  return r;
}

// Node opens every fd with O_CLOEXEC; clearing it lets an fd we hand over
// survive execve (e.g. into the next agent version during a live upgrade).
static napi_value clear_cloexec(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  int flags = fcntl((int)fd, F_GETFD);
  if (flags < 0) return throw_errno(env, errno, "fcntl", "%d F_GETFD", (int)fd);
  if (fcntl((int)fd, F_SETFD, flags & ~FD_CLOEXEC) < 0)
    return throw_errno(env, errno, "fcntl", "%d F_SETFD", (int)fd);
  return NULL;
}

static napi_value do_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int64_t flags;
  char *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
  if (!get_args(env, info, 5, argv)) return napi_failed(env);
  // Mount flags are an unsigned 32-bit set; accept the negative int32 that
  // JS `|` produces when the top bit is set.
  if ((source = get_str(env, argv[0], "source")) && (target = get_str(env, argv[1], "target")) &&
      (fstype = get_str(env, argv[2], "fstype")) &&
      get_int(env, argv[3], "flags", INT32_MIN, UINT32_MAX, &flags) &&
      (data = get_str(env, argv[4], "data"))) {
    unsigned long f = (uint32_t)flags;
    // These operations act on an existing mount and ignore the type: pass
    // NULL rather than a meaningless string. Empty source/data mean "none".
    bool no_type = f & (MS_REMOUNT | MS_BIND | MS_MOVE | MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE);
    const char *t = no_type || !*fstype ? NULL : fstype;
    if (mount(*source ? source : NULL, target, t, f, *data ? data : NULL) < 0)
      // data is left out of the message: it may hold credentials.
      throw_errno(env, errno, "mount", "%s on %s type %s flags 0x%lx", *source ? source : "none", target,
                  t ? t : "none", f);
  }
  free(source), free(target), free(fstype), free(data);
  return NULL;
}

static napi_value do_umount(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t flags;
  if (!get_args(env, info, 2, argv)) return napi_failed(env);
  char *target = get_str(env, argv[0], "target");
  if (target && get_int(env, argv[1], "flags", 0, INT32_MAX, &flags) && umount2(target, (int)flags) < 0)
    throw_errno(env, errno, "umount2", "%s flags 0x%x", target, (int)flags);
  free(target);
  return NULL;
}

static napi_value do_sethostname(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  char *name = get_str(env, argv[0], "name");
  if (name && sethostname(name, strlen(name)) < 0) throw_errno(env, errno, "sethostname", "%s", name);
  free(name);
  return NULL;
}

static napi_value do_sync(napi_env env, napi_callback_info info) {
  (void)env, (void)info;
  sync();
  return NULL;
}

static napi_value do_reboot(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t cmd;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  // RB_* magic numbers are unsigned 32-bit (RB_HALT_SYSTEM > INT32_MAX).
  if (!get_int(env, argv[0], "cmd", INT32_MIN, UINT32_MAX, &cmd)) return NULL;
  sync();  // reboot(2) does not flush dirty pages itself; data would be lost
  if (reboot((int)(uint32_t)cmd) < 0) return throw_errno(env, errno, "reboot", "0x%08x", (unsigned)cmd);
  return NULL;  // only reached for commands that return (e.g. CAD on/off)
}

static napi_value finit_module(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return napi_failed(env);
  char *path = get_str(env, argv[0], "path"), *params = NULL;
  if (path && (params = get_str(env, argv[1], "params"))) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      throw_errno(env, errno, "open", "%s", path);
    } else {
      // glibc has no wrapper. EEXIST means the module is already loaded,
      // which is what the caller wanted.
      if (syscall(SYS_finit_module, fd, params, 0) < 0 && errno != EEXIST)
        throw_errno(env, errno, "finit_module", "%s", path);
      close(fd);
    }
  }
  free(path), free(params);
  return NULL;
}

static napi_value do_getpid(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  CHECK(napi_create_int32(env, getpid(), &r));
  return r;
}

static napi_value do_getppid(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  CHECK(napi_create_int32(env, getppid(), &r));
  return r;
}

// clock_settime(CLOCK_REALTIME): sets the machine's wall clock. Only the
// guest's init calls it (machine.ts requireGuestInit). Out-of-range values are
// a TypeError before any syscall, so the kernel never sees a bad timespec.
static napi_value clock_settime_realtime(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t sec, nsec;
  if (!get_args(env, info, 2, argv)) return napi_failed(env);
  // 2^53-1: the largest integer a JS number holds exactly.
  if (!get_int(env, argv[0], "sec", 0, 9007199254740991LL, &sec)) return NULL;
  if (!get_int(env, argv[1], "nsec", 0, 999999999, &nsec)) return NULL;
  struct timespec ts = { .tv_sec = (time_t)sec, .tv_nsec = (long)nsec };
  if (clock_settime(CLOCK_REALTIME, &ts) < 0)
    return throw_errno(env, errno, "clock_settime", "CLOCK_REALTIME %lld.%09lld", (long long)sec, (long long)nsec);
  return NULL;
}

// Values come from the system headers so JS never hard-codes them.
#define CONST(name) { #name, (uint32_t)(name) }
static const struct { const char *name; uint32_t value; } constants[] = {
  CONST(MS_RDONLY), CONST(MS_NOSUID), CONST(MS_NODEV), CONST(MS_NOEXEC), CONST(MS_REMOUNT),
  CONST(MS_BIND), CONST(MS_REC), CONST(MS_PRIVATE), CONST(MS_SLAVE), CONST(MS_SHARED),
  CONST(MS_MOVE), CONST(MS_STRICTATIME), CONST(MS_RELATIME), CONST(MNT_DETACH), CONST(MNT_FORCE),
  CONST(RB_POWER_OFF), CONST(RB_AUTOBOOT), CONST(RB_HALT_SYSTEM),
};

NAPI_MODULE_INIT() {
  napi_property_descriptor fns[] = {
#define FN(js, c) { js, NULL, c, NULL, NULL, NULL, napi_enumerable, NULL }
    FN("setChildSubreaper", set_child_subreaper), FN("isChildSubreaper", is_child_subreaper),
    FN("waitpid", do_waitpid), FN("getCloexec", get_cloexec), FN("clearCloexec", clear_cloexec),
    FN("mount", do_mount), FN("umount", do_umount), FN("sethostname", do_sethostname),
    FN("reboot", do_reboot), FN("sync", do_sync), FN("finitModule", finit_module),
    FN("getpid", do_getpid), FN("getppid", do_getppid),
    FN("clockSettime", clock_settime_realtime),
#undef FN
  };
  CHECK(napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));

  napi_value consts, v;
  CHECK(napi_create_object(env, &consts));
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    CHECK(napi_create_uint32(env, constants[i].value, &v));
    CHECK(napi_set_named_property(env, consts, constants[i].name, v));
  }
  CHECK(napi_object_freeze(env, consts));
  CHECK(napi_set_named_property(env, exports, "constants", consts));
  return exports;
}
