// agent_native: the few Linux syscalls the guest agent needs (as PID 1) that
// Node does not expose: child subreaper, targeted waitpid, close-on-exec,
// mount, hostname, reboot, kernel module loading, the wall clock, and
// AF_VSOCK / AF_UNIX stream sockets as bare fds (Node has no vsock binding;
// src/native/fd-socket.ts wraps the fds in libuv handles).
//
// Plain C against node_api.h. N-API version 8 is a stable ABI, so the same
// .node file loads on Node 20, 22 and 24 without a rebuild.
#define _GNU_SOURCE  // strerrorname_np, syscall
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>
#include <net/if.h>

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

// Error("<syscall> <args>: <strerror>") carrying .code/.errno/.syscall,
// the same shape as Node's own system errors, so callers can test err.code.
// .errno is the positive kernel value (== os.constants.errno.X).
static napi_value errno_error(napi_env env, int err, const char *syscall, const char *args) {
  char msg[4608];
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
  return error;
}

// Throws errno_error's Error; returns NULL for the caller to return.
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *fmt, ...) {
  char args[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  napi_value error = errno_error(env, err, syscall, args);
  if (error) napi_throw(env, error);
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
// survive execve (e.g. into the next agent version during a live upgrade),
// and the next image sets it again on the fds it adopted.
static napi_value change_cloexec(napi_env env, napi_callback_info info, bool on) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  int flags = fcntl((int)fd, F_GETFD);
  if (flags < 0) return throw_errno(env, errno, "fcntl", "%d F_GETFD", (int)fd);
  if (fcntl((int)fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC) < 0)
    return throw_errno(env, errno, "fcntl", "%d F_SETFD", (int)fd);
  return NULL;
}

static napi_value clear_cloexec(napi_env env, napi_callback_info info) {
  return change_cloexec(env, info, false);
}

static napi_value set_cloexec(napi_env env, napi_callback_info info) {
  return change_cloexec(env, info, true);
}

// A JS array of strings as a NULL-terminated malloc'd vector (caller frees
// with free_strv); NULL with a pending exception otherwise.
static void free_strv(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

static char **get_strv(napi_env env, napi_value v, const char *what) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array || napi_get_array_length(env, v, &n) != napi_ok || n > 65536) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an array of at most 65536 strings", what);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  char **out = calloc((size_t)n + 1, sizeof *out);
  if (!out) return (napi_throw_error(env, NULL, "out of memory"), NULL);
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, v, i, &item) != napi_ok || !(out[i] = get_str(env, item, what))) {
      free_strv(out);
      return NULL;
    }
  }
  return out;
}

// execve(2): replaces this process's image, keeping its pid, children and
// every fd without FD_CLOEXEC. Returns only when the exec failed (the
// process goes on as it was): then it throws, with errno.
static napi_value do_execve(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return napi_failed(env);
  char *path = get_str(env, argv[0], "path");
  char **args = path ? get_strv(env, argv[1], "argv") : NULL;
  char **envp = args ? get_strv(env, argv[2], "env") : NULL;
  if (envp) {
    execve(path, args, envp);
    int err = errno;
    throw_errno(env, err, "execve", "%s", path);
  }
  free_strv(envp);
  free_strv(args);
  free(path);
  return NULL;
}

// spawn(file, argv, env, cwd, [fd0, fd1, ...]): posix_spawnp(3), with each
// descriptor given as the child's fd of that index (-1: /dev/null for 0-2,
// nothing above),
// every signal at its default disposition and none blocked (Node ignores
// SIGPIPE, which a child must not inherit), and the working directory `cwd`
// ("" for this one's). glibc's posix_spawn shares the parent's memory until
// the exec (CLONE_VFORK): it costs the same however large the agent is, where
// fork(2) (child_process) copies page tables that grow with what the agent
// tracks. Returns the pid; the caller waits for it (the reaper).
static napi_value do_spawn(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return napi_failed(env);
  int64_t fds[64];
  uint32_t nfds = 0;
  bool is_array = false;
  if (napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[4], &nfds) != napi_ok || nfds > 64) {
    napi_throw_type_error(env, NULL, "stdio must be an array of at most 64 fds");
    return NULL;
  }
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value item;
    if (napi_get_element(env, argv[4], i, &item) != napi_ok) return napi_failed(env);
    if (!get_int(env, item, "stdio fd", -1, INT32_MAX, &fds[i])) return NULL;
  }
  char *file = get_str(env, argv[0], "file");
  char **args = file ? get_strv(env, argv[1], "argv") : NULL;
  char **envp = args ? get_strv(env, argv[2], "env") : NULL;
  char *cwd = envp ? get_str(env, argv[3], "cwd") : NULL;
  napi_value out = NULL;
  if (cwd) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    for (uint32_t i = 0; i < nfds || i < 3; i++) {
      if (i < nfds && fds[i] >= 0) posix_spawn_file_actions_adddup2(&fa, (int)fds[i], (int)i);
      else if (i < 3) posix_spawn_file_actions_addopen(&fa, (int)i, "/dev/null", O_RDWR, 0);
    }
    if (cwd[0] != '\0') posix_spawn_file_actions_addchdir_np(&fa, cwd);
    pid_t pid = 0;
    int r = posix_spawnp(&pid, file, &fa, &attr, args, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (r != 0) throw_errno(env, r, "posix_spawn", "%s", file);
    else if (napi_create_int32(env, pid, &out) != napi_ok) out = NULL;
  }
  free(cwd);
  free_strv(envp);
  free_strv(args);
  free(file);
  return out;
}

// socketpair(AF_UNIX, SOCK_STREAM) with both ends close-on-exec: [a, b].
static napi_value do_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return throw_errno(env, errno, "socketpair", "AF_UNIX");
  napi_value out, v;
  CHECK(napi_create_array_with_length(env, 2, &out));
  for (uint32_t i = 0; i < 2; i++) {
    CHECK(napi_create_int32(env, sv[i], &v));
    CHECK(napi_set_element(env, out, i, v));
  }
  return out;
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

// Sets IFF_UP on a link by name: one ioctl where `ip link set dev X up` is a
// process (costly under TCG at boot, docs/guest.md). For the loopback the
// kernel then adds 127.0.0.1/8 and ::1 itself.
static napi_value link_up(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  char *name = get_str(env, argv[0], "name");
  if (!name) return NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (strlen(name) == 0 || strlen(name) >= IFNAMSIZ) {
    napi_throw_type_error(env, NULL, "name must be 1 to 15 bytes");
    free(name);
    return NULL;
  }
  memcpy(ifr.ifr_name, name, strlen(name));
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", "AF_INET for %s", name);
  } else {
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
      throw_errno(env, errno, "SIOCGIFFLAGS", "%s", name);
    } else if (!(ifr.ifr_flags & IFF_UP)) {
      ifr.ifr_flags |= IFF_UP;
      if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) throw_errno(env, errno, "SIOCSIFFLAGS", "%s", name);
    }
    close(fd);
  }
  free(name);
  return NULL;
}

// finit_module on a libuv worker thread: the module's load (reading, relocating,
// its init) runs beside the event loop, so the agent answers meanwhile.
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *path, *params;
  int err;
  const char *syscall;
} finit_job;

static void finit_execute(napi_env env, void *data) {
  (void)env;
  finit_job *job = data;
  int fd = open(job->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->err = errno, job->syscall = "open";
    return;
  }
  if (syscall(SYS_finit_module, fd, job->params, 0) < 0 && errno != EEXIST) job->err = errno, job->syscall = "finit_module";
  close(fd);
}

static void finit_complete(napi_env env, napi_status status, void *data) {
  finit_job *job = data;
  napi_value result = NULL;
  if (status != napi_ok) {
    napi_value msg;
    if (napi_create_string_utf8(env, "finit_module: the worker was cancelled", NAPI_AUTO_LENGTH, &msg) == napi_ok) napi_create_error(env, NULL, msg, &result);
    if (result) napi_reject_deferred(env, job->deferred, result);
  } else if (job->err) {
    result = errno_error(env, job->err, job->syscall, job->path);
    if (result) napi_reject_deferred(env, job->deferred, result);
  } else {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  free(job->path), free(job->params), free(job);
}

static napi_value finit_module_async(napi_env env, napi_callback_info info) {
  napi_value argv[2], promise, name;
  if (!get_args(env, info, 2, argv)) return napi_failed(env);
  finit_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "calloc", "finit job");
  if (!(job->path = get_str(env, argv[0], "path")) || !(job->params = get_str(env, argv[1], "params"))) goto fail;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "finitModuleAsync", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, finit_execute, finit_complete, job, &job->work) != napi_ok)
    goto fail_napi;
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    goto fail_napi;
  }
  return promise;
fail_napi:
  napi_failed(env);
fail:
  free(job->path), free(job->params), free(job);
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

// ---- Stream sockets as bare fds -------------------------------------------
// Listening sockets are created SOCK_NONBLOCK|SOCK_CLOEXEC (libuv accepts
// from them). Connected sockets are connected blocking, then switched to
// O_NONBLOCK before the fd is returned. Every fd is close-on-exec; the
// upgrade clears that explicitly (clearCloexec) for the one fd it hands over.
// On failure the fd is closed and errno is reported as the failing syscall.

static napi_value int_result(napi_env env, int fd) {
  napi_value r;
  if (napi_create_int32(env, fd, &r) != napi_ok) {
    close(fd);
    return napi_failed(env);
  }
  return r;
}

// Close fd keeping errno of the syscall that failed.
static int fail_close(int fd) {
  int err = errno;
  close(fd);
  return err;
}

// connect(2) on a blocking socket, then O_NONBLOCK. After EINTR connect is
// called again: vsock cancels an interrupted attempt (the retry starts a new
// one), TCP-like sockets go on in the background (the retry says EALREADY or
// EISCONN; then wait for writability and read the outcome from SO_ERROR).
static int connect_blocking(int fd, const struct sockaddr *sa, socklen_t len) {
  int r;
  do r = connect(fd, sa, len); while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EISCONN) {
    if (errno != EALREADY && errno != EINPROGRESS) return errno;
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    while (poll(&p, 1, -1) < 0)
      if (errno != EINTR) return errno;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return errno;
    if (soerr) return soerr;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return errno;
  return 0;
}

// Builds a sockaddr_un; ENAMETOOLONG if the path does not fit sun_path.
static int unix_addr(const char *path, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (!*path) return EINVAL;
  if (strlen(path) >= sizeof sa->sun_path) return ENAMETOOLONG;
  strcpy(sa->sun_path, path);
  return 0;
}

static void vsock_addr(struct sockaddr_vm *sa, uint32_t cid, uint32_t port) {
  memset(sa, 0, sizeof *sa);
  sa->svm_family = AF_VSOCK;
  sa->svm_cid = cid;
  sa->svm_port = port;
}

// vsockListen(cid, port, backlog) -> fd. cid -1 = VMADDR_CID_ANY.
static napi_value vsock_listen(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t cid, port, backlog;
  if (!get_args(env, info, 3, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "cid", -1, UINT32_MAX - 1, &cid) ||
      !get_int(env, argv[1], "port", 0, UINT32_MAX - 1, &port) ||
      !get_int(env, argv[2], "backlog", 0, INT32_MAX, &backlog))
    return NULL;
  uint32_t c = cid < 0 ? VMADDR_CID_ANY : (uint32_t)cid;
  struct sockaddr_vm sa;
  vsock_addr(&sa, c, (uint32_t)port);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "AF_VSOCK");
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    return throw_errno(env, fail_close(fd), "bind", "vsock %lld:%lld", (long long)cid, (long long)port);
  if (listen(fd, (int)backlog) < 0)
    return throw_errno(env, fail_close(fd), "listen", "vsock %lld:%lld", (long long)cid, (long long)port);
  return int_result(env, fd);
}

// vsockConnect(cid, port) -> fd (connected, O_NONBLOCK). Blocks the calling
// thread until the peer accepts or refuses (or the kernel's vsock connect
// timeout, 2 s by default, passes).
static napi_value vsock_connect(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t cid, port;
  if (!get_args(env, info, 2, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "cid", 0, UINT32_MAX - 1, &cid) ||
      !get_int(env, argv[1], "port", 0, UINT32_MAX - 1, &port))
    return NULL;
  struct sockaddr_vm sa;
  vsock_addr(&sa, (uint32_t)cid, (uint32_t)port);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "AF_VSOCK");
  int err = connect_blocking(fd, (struct sockaddr *)&sa, sizeof sa);
  if (err) {
    close(fd);
    return throw_errno(env, err, "connect", "vsock %lld:%lld", (long long)cid, (long long)port);
  }
  return int_result(env, fd);
}

// unixListen(path, backlog) -> fd: the AF_UNIX twin of vsockListen, so the
// fd wrapping can be tested where no vsock may be opened. Does not unlink an
// existing path (bind fails with EADDRINUSE).
static napi_value unix_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t backlog;
  if (!get_args(env, info, 2, argv)) return napi_failed(env);
  char *path = get_str(env, argv[0], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  struct sockaddr_un sa;
  int err, fd = -1;
  if (!get_int(env, argv[1], "backlog", 0, INT32_MAX, &backlog)) goto out;
  if ((err = unix_addr(path, &sa))) {
    throw_errno(env, err, "bind", "%s", path);
    goto out;
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", "AF_UNIX");
  } else if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    throw_errno(env, fail_close(fd), "bind", "%s", path);
  } else if (listen(fd, (int)backlog) < 0) {
    throw_errno(env, fail_close(fd), "listen", "%s", path);
  } else {
    result = int_result(env, fd);
  }
out:
  free(path);
  return result;
}

// unixConnect(path) -> fd (connected, O_NONBLOCK).
static napi_value unix_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  char *path = get_str(env, argv[0], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  struct sockaddr_un sa;
  int err, fd;
  if ((err = unix_addr(path, &sa))) {
    throw_errno(env, err, "connect", "%s", path);
  } else if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
    throw_errno(env, errno, "socket", "AF_UNIX");
  } else if ((err = connect_blocking(fd, (struct sockaddr *)&sa, sizeof sa))) {
    close(fd);
    throw_errno(env, err, "connect", "%s", path);
  } else {
    result = int_result(env, fd);
  }
  free(path);
  return result;
}

// dupFd(fd) -> a new fd (F_DUPFD_CLOEXEC) for the same open socket: lets a
// listening socket outlive the libuv handle that owns the original fd.
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  int r = fcntl((int)fd, F_DUPFD_CLOEXEC, 3);
  if (r < 0) return throw_errno(env, errno, "fcntl", "%d F_DUPFD_CLOEXEC", (int)fd);
  return int_result(env, r);
}

// closeFd(fd). EINTR is not retried: Linux has released the fd by then.
static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "fd", 0, INT32_MAX, &fd)) return NULL;
  if (close((int)fd) < 0 && errno != EINTR) return throw_errno(env, errno, "close", "%d", (int)fd);
  return NULL;
}

// Values come from the system headers so JS never hard-codes them.
#define CONST(name) { #name, (uint32_t)(name) }
// The pid of one child that has exited and is not reaped yet, leaving it
// unreaped (WNOWAIT), or 0 if there is none: which zombie to reap next costs
// one call, not a read of every child's /proc stat.
static napi_value first_exited(napi_env env, napi_callback_info info) {
  (void)info;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT); while (r < 0 && errno == EINTR);
  if (r < 0 && errno != ECHILD) return throw_errno(env, errno, "waitid", "P_ALL, WNOWAIT");
  napi_value out;
  CHECK(napi_create_int32(env, r < 0 ? 0 : si.si_pid, &out));
  return out;
}

// trimMemory() -> whether malloc_trim(0) gave any memory back to the kernel.
// glibc keeps what a burst of work freed (per-thread arenas, holes below the
// top of the heap) resident until asked; V8's heap is not malloc's.
static napi_value trim_memory(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_get_boolean(env, malloc_trim(0) == 1, &out));
  return out;
}

// Raises RLIMIT_NOFILE (soft and hard) to at least `want`, as far as the
// process may (root may raise the hard limit up to fs.nr_open); returns the
// limits in force afterwards as [soft, hard].
static napi_value raise_fd_limit(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t want;
  if (!get_args(env, info, 1, argv)) return napi_failed(env);
  if (!get_int(env, argv[0], "limit", 1, INT32_MAX, &want)) return NULL;
  struct rlimit cur;
  if (getrlimit(RLIMIT_NOFILE, &cur) < 0) return throw_errno(env, errno, "getrlimit", "RLIMIT_NOFILE");
  if (cur.rlim_cur < (rlim_t)want || cur.rlim_max < (rlim_t)want) {
    struct rlimit next = cur;
    if (next.rlim_max < (rlim_t)want) next.rlim_max = (rlim_t)want;
    next.rlim_cur = (rlim_t)want;
    if (setrlimit(RLIMIT_NOFILE, &next) < 0) {
      // Not allowed to raise the hard limit: the soft one as far as the hard one goes.
      next = cur;
      next.rlim_cur = cur.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &next) < 0) return throw_errno(env, errno, "setrlimit", "RLIMIT_NOFILE %lld", (long long)want);
    }
    if (getrlimit(RLIMIT_NOFILE, &cur) < 0) return throw_errno(env, errno, "getrlimit", "RLIMIT_NOFILE");
  }
  napi_value out, v;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_double(env, cur.rlim_cur == RLIM_INFINITY ? -1 : (double)cur.rlim_cur, &v));
  CHECK(napi_set_element(env, out, 0, v));
  CHECK(napi_create_double(env, cur.rlim_max == RLIM_INFINITY ? -1 : (double)cur.rlim_max, &v));
  CHECK(napi_set_element(env, out, 1, v));
  return out;
}

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
    FN("waitpid", do_waitpid), FN("firstExited", first_exited), FN("raiseFdLimit", raise_fd_limit), FN("trimMemory", trim_memory), FN("spawn", do_spawn), FN("socketpair", do_socketpair), FN("getCloexec", get_cloexec), FN("clearCloexec", clear_cloexec), FN("setCloexec", set_cloexec),
    FN("mount", do_mount), FN("umount", do_umount), FN("sethostname", do_sethostname), FN("linkUp", link_up),
    FN("reboot", do_reboot), FN("sync", do_sync), FN("finitModule", finit_module), FN("finitModuleAsync", finit_module_async),
    FN("getpid", do_getpid), FN("getppid", do_getppid),
    FN("clockSettime", clock_settime_realtime),
    FN("vsockListen", vsock_listen), FN("vsockConnect", vsock_connect),
    FN("unixListen", unix_listen), FN("unixConnect", unix_connect),
    FN("dupFd", dup_fd), FN("closeFd", close_fd), FN("execve", do_execve),
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
