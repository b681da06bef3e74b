/* heapscope: the command-line tool. */
#define _GNU_SOURCE
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef HS_VERSION
#define HS_VERSION "0.1"
#endif
#ifndef HS_LIBDIR
#define HS_LIBDIR "/usr/local/lib/heapscope"
#endif

void hs_error(const char *fmt, ...) {
  va_list ap;
  fputs("heapscope: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static const char *argv0;

/* This tool's own file: /proc/self/exe, or, without /proc (a container, a
 * chroot), argv[0] as the shell found it: a path, or a name on PATH.
 * Without it, the agent next to the tool was not found and the error named
 * an empty path. */
const char *hs_self_path(void) {
  static char self[PATH_MAX];
  if (self[0]) return self;
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = 0;
  char found[PATH_MAX];
  if (self[0] || !argv0 || !*argv0) return self;
  if (hs_find_program(argv0, found, sizeof found) || !realpath(found, self)) self[0] = 0;
  return self;
}

/* The agent lives next to the tool (build tree), or in PREFIX/lib/heapscope
 * (installed), or where HEAPSCOPE_AGENT says. */
int hs_find_agent(char *out, size_t len) {
  const char *env = getenv("HEAPSCOPE_AGENT");
  if (env && *env) {
    snprintf(out, len, "%s", env);
    return access(out, R_OK);
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", hs_self_path());
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  /* build/, build/asan/ (the sanitized CLI of the tests), PREFIX/bin */
  const char *cands[] = {"%s/libheapscope.so", "%s/../libheapscope.so", "%s/../lib/heapscope/libheapscope.so"};
  for (size_t i = 0; i < 3; i++) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, cands[i], dir);
    if (access(p, R_OK) == 0 && realpath(p, out)) return 0;
  }
  snprintf(out, len, "%s/libheapscope.so", HS_LIBDIR);
  return access(out, R_OK);
}

static void usage(FILE *f) {
  fprintf(f, "usage: heapscope COMMAND [ARGS...]\n\n"
             "commands:\n"
             "  run [OPTIONS] -- PROGRAM [ARGS...]   run PROGRAM and report its leaks at exit\n"
             "  help                                 this text\n"
             "  version                              print the version\n\n"
             "See heapscope run --help for the options of run.\n");
}

int main(int argc, char **argv) {
  argv0 = argv[0];
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("heapscope %s\n", HS_VERSION);
    return 0;
  }
  hs_error("unknown command '%s' — see heapscope help", cmd);
  return 2;
}
