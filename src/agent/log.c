/* Output without malloc or stdio: a tiny formatter into a caller's buffer,
 * written with write(2). Hooks may run while stdio's locks are held. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include "../common/hs_write.h"
#include "hs.h"

/* Where the text report goes. Programs close stderr at exit (coreutils'
 * close_stdout, an atexit handler, runs before the agent's report: `ls`
 * and `echo` lost theirs), or point fd 2 elsewhere (a daemon's log file).
 * Like valgrind, the report goes to the stderr the program started with:
 * fd 2 while it is still that file, else a copy of it, high and
 * close-on-exec, made at start-up, while that is still the file. When
 * neither is (a program closed every descriptor and put a file of its own
 * at 2), nothing is written: that file may be the program's data. */
static int log_dup = -1;
static dev_t log_dev;
static ino_t log_ino;
static int log_off;

/* A child that `heapscope run`'s program started with its stderr pointed
 * elsewhere prints nothing: that stderr is its parent's data (gdb runs
 * `iconv -l` with stderr into the pipe it parses, and took the child's
 * report for charset names), a log file, /dev/null. Its JSON report
 * (--report, FILE.<pid>) is still written. run_stderr is the identity of
 * run's own stderr, from the command line tool. */
static int run_stderr_elsewhere(const struct stat *st) {
  if (!hs_opt.run_stderr || hs_is_root_process()) return 0;
  char *end;
  unsigned long long dev = strtoull(hs_opt.run_stderr, &end, 10);
  if (*end != ':') return 0;
  unsigned long long ino = strtoull(end + 1, NULL, 10);
  return (unsigned long long)st->st_dev != dev || (unsigned long long)st->st_ino != ino;
}

void hs_log_keep(void) {
  struct stat st;
  if (hs_opt.log_fd != 2) return;
  /* Started without a stderr: a descriptor 2 opened later is the program's
   * own file. */
  if (fstat(2, &st) || run_stderr_elsewhere(&st)) {
    log_off = 1;
    return;
  }
  struct rlimit rl;
  long lo = 990; /* above what programs use, under select's 1024 and the usual limit */
  if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < lo + 32)
    lo = (long)rl.rlim_cur > 64 ? (long)rl.rlim_cur - 32 : 3;
  log_dup = fcntl(2, F_DUPFD_CLOEXEC, lo);
  log_dev = st.st_dev;
  log_ino = st.st_ino;
}

static int same_file(int fd) {
  struct stat st;
  return fd >= 0 && !fstat(fd, &st) && st.st_dev == log_dev && st.st_ino == log_ino;
}

int hs_log_fd(void) {
  if (log_off) return -1;
  if (hs_opt.log_fd != 2 || log_dup < 0 || same_file(2)) return (int)hs_opt.log_fd;
  return same_file(log_dup) ? log_dup : -1;
}

static size_t put_u(char *buf, size_t pos, size_t len, unsigned long v, unsigned base, int width,
                    char pad) {
  char tmp[32];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (n < width && n < (int)sizeof tmp) tmp[n++] = pad;
  while (n > 0) {
    if (pos + 1 < len) buf[pos] = tmp[n - 1];
    pos++;
    n--;
  }
  return pos;
}

static int hs_vsnprintf(char *buf, size_t len, const char *fmt, va_list ap) {
  size_t pos = 0;
  for (const char *p = fmt; *p; p++) {
    if (*p != '%') {
      if (pos + 1 < len) buf[pos] = *p;
      pos++;
      continue;
    }
    p++;
    char pad = ' ';
    int width = 0, lng = 0, zu = 0;
    if (*p == '0') { pad = '0'; p++; }
    while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
    while (*p == 'l') { lng++; p++; }
    if (*p == 'z') { zu = 1; p++; }
    switch (*p) {
    case 's': {
      const char *s = va_arg(ap, const char *);
      if (!s) s = "(null)";
      for (; *s; s++) {
        if (pos + 1 < len) buf[pos] = *s;
        pos++;
      }
      break;
    }
    case 'c':
      if (pos + 1 < len) buf[pos] = (char)va_arg(ap, int);
      pos++;
      break;
    case 'd': {
      long v = lng ? va_arg(ap, long) : va_arg(ap, int);
      unsigned long u = (unsigned long)v;
      if (v < 0) {
        if (pos + 1 < len) buf[pos] = '-';
        pos++;
        u = -(unsigned long)v;
      }
      pos = put_u(buf, pos, len, u, 10, width, pad);
      break;
    }
    case 'u':
      pos = put_u(buf, pos, len, (lng || zu) ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10,
                  width, pad);
      break;
    case 'x':
      pos = put_u(buf, pos, len, (lng || zu) ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16,
                  width, pad);
      break;
    case 'p':
      if (pos + 1 < len) buf[pos] = '0';
      pos++;
      if (pos + 1 < len) buf[pos] = 'x';
      pos++;
      pos = put_u(buf, pos, len, (unsigned long)va_arg(ap, void *), 16, 0, ' ');
      break;
    case '%':
      if (pos + 1 < len) buf[pos] = '%';
      pos++;
      break;
    default: /* unsupported: print verbatim */
      if (pos + 1 < len) buf[pos] = *p;
      pos++;
      if (!*p) p--;
    }
  }
  if (len) buf[pos < len ? pos : len - 1] = 0;
  return (int)pos;
}

int hs_snprintf(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = hs_vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  return n;
}

void hs_write_all(int fd, const char *buf, size_t len) { hs_write_quietly(fd, buf, len); }

void hs_dprintf(int fd, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = hs_vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  hs_write_all(fd, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

void hs_warn(const char *fmt, ...) {
  char buf[1024];
  int n = hs_snprintf(buf, sizeof buf, "heapscope: warning: ");
  va_list ap;
  va_start(ap, fmt);
  n += hs_vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  hs_write_all(hs_log_fd(), buf, (size_t)n);
}
