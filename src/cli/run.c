/* `heapscope run [OPTIONS] -- PROGRAM [ARGS...]`: validates the options,
 * passes them to the agent through HEAPSCOPE_OPTIONS and execs the program
 * with the agent preloaded. The program takes this process's place (as
 * valgrind's does): its pid, its signals and its exit status are the
 * program's own, with no parent left to forward them, and nothing is paid
 * for a second process. The report is the agent's work, in the program. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../report/suppress.h"
#include "cli.h"

/* One table, sorted by name: the option, whether it takes a value, help. */
#define RUN_OPTIONS(X)                                                                          \
  X("error-exitcode", 1, "N", "exit status when leaks of the shown kinds are found (default: off)") \
  X("follow-children", 1, "yes|no", "profile forked and exec'd children, each with its own report (yes)") \
  X("http", 1, "ADDR:PORT", "serve /debug/pprof/ while the program runs (loopback only by default)") \
  X("http-allow-remote", 0, "", "allow a non-loopback --http address")                         \
  X("http-token-file", 1, "FILE", "require 'Authorization: Bearer <token in FILE>' on --http")  \
  X("leak-check", 1, "full|summary|no", "per-stack records, summary only, or none (full)")     \
  X("max-frames", 1, "N", "stack depth recorded (64)")                                          \
  X("mode", 1, "full|sample", "record every allocation, or sample by bytes (full)")            \
  X("output", 1, "DIR", "write profiles at exit: DIR/heapscope.<prog>.<pid>.<kind>.pb.gz")    \
  X("report", 1, "FILE", "write the JSON report to FILE; %p expands to the pid")               \
  X("sample-rate", 1, "BYTES", "mean bytes between samples in sample mode (512K)")             \
  X("show-leak-kinds", 1, "LIST", "definite,indirect,possible,reachable or all (definite,indirect,possible)") \
  X("snapshot-interval", 1, "SECONDS", "write a numbered heap dump every SECONDS (to --output)") \
  X("snapshot-keep", 1, "N", "numbered heap dumps kept, oldest deleted (10)")                 \
  X("dump-signal", 1, "SIGNAL", "write a numbered heap dump on this signal (e.g. USR2)")      \
  X("suppressions", 1, "FILE", "LSan-style suppression file (repeatable)")

static void run_usage(FILE *f) {
  fprintf(f, "usage: heapscope run [OPTIONS] -- PROGRAM [ARGS...]\n\n"
             "Runs PROGRAM with the heapscope agent and reports its leaks at exit.\n\noptions:\n");
#define X(name, arg, meta, help) fprintf(f, "  --%s%s%-*s %s\n", name, arg ? "=" : "", (int)(34 - strlen(name) + (arg ? 0 : 1)), meta, help);
  RUN_OPTIONS(X)
#undef X
  fprintf(f, "\nEvery option can also be given as key=value in HEAPSCOPE_OPTIONS (',' separated,\n"
             "'-' written as '_'), which profiles a program started any other way.\n");
}

static int file_exists_exec(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* Why the dynamic linker will not load the agent into PROGRAM, or NULL:
 * LD_PRELOAD needs a dynamically linked program (one with an interpreter,
 * PT_INTERP), and the loader ignores it for a set-user-ID or set-group-ID
 * program run by someone else. Said before the exec, as a warning: the
 * program still runs, but with no report at all, which would otherwise
 * look like heapscope failing. Scripts (#!) are left to their interpreter. */
static const char *why_no_agent(const char *prog) {
  struct stat st;
  if (stat(prog, &st) == 0 && (((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
                               ((st.st_mode & S_ISGID) && st.st_gid != getegid())))
    return "it is set-user-ID or set-group-ID, and the dynamic linker ignores LD_PRELOAD for it";
  int fd = open(prog, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  Elf64_Ehdr eh;
  const char *why = NULL;
  if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
      eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
    int interp = 0;
    for (unsigned i = 0; i < eh.e_phnum && i < 4096; i++) {
      Elf64_Phdr ph;
      if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph) break;
      if (ph.p_type == PT_INTERP) interp = 1;
    }
    if (!interp) why = "it is statically linked, and LD_PRELOAD needs a dynamically linked program";
  } else if (!memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS32) {
    why = "it is a 32-bit program, and the agent is 64-bit";
  }
  close(fd);
  return why;
}

/* Finds PROGRAM the way execvp will, to report a missing one clearly. */
int hs_find_program(const char *prog, char *out, size_t len) {
  if (strchr(prog, '/')) {
    snprintf(out, len, "%s", prog);
    return file_exists_exec(prog) ? 0 : -1;
  }
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn(path, ":");
    snprintf(out, len, "%.*s/%s", (int)n, path, prog);
    if (file_exists_exec(out)) return 0;
    path += n;
    if (*path) path++;
  }
  return -1;
}

static int check_report_path(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir)
    dir[1] = 0;
  else if (slash)
    *slash = 0;
  else
    snprintf(dir, sizeof dir, ".");
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    hs_error("report directory %s does not exist — create it or choose another --report path", dir);
    return -1;
  }
  if (access(dir, W_OK) != 0) {
    hs_error("cannot write the report in %s: %s — choose another --report path", dir, strerror(errno));
    return -1;
  }
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    hs_error("--report %s is a directory — give a file name", path);
    return -1;
  }
  return 0;
}

static void append_opt(char *buf, size_t len, const char *key, const char *val) {
  size_t n = strlen(buf);
  snprintf(buf + n, len - n, "%s%s=%s", n ? "," : "", key, val);
}

int cmd_run(int argc, char **argv) {
  char opts[16384] = "";
  const char *env = getenv("HEAPSCOPE_OPTIONS");
  if (env) snprintf(opts, sizeof opts, "%s", env);

  static const struct option longopts[] = {
#define X(name, arg, meta, help) {name, arg ? required_argument : no_argument, NULL, 0},
      RUN_OPTIONS(X)
#undef X
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  for (;;) {
    int idx = -1;
    int c = getopt_long(argc, argv, "+h", longopts, &idx);
    if (c == -1) break;
    if (c == 'h') {
      run_usage(stdout);
      return 0;
    }
    if (c == '?') {
      if (optopt)
        hs_error("option -%c is unknown — see heapscope run --help", optopt);
      else
        hs_error("option %s is unknown or lacks its value — see heapscope run --help", argv[optind - 1]);
      return 2;
    }
    const char *name = longopts[idx].name, *val = optarg;
    char key[64];
    snprintf(key, sizeof key, "%s", name);
    for (char *p = key; *p; p++)
      if (*p == '-') *p = '_';
    if (!strcmp(name, "snapshot-interval") || !strcmp(name, "snapshot-keep")) {
      char *end;
      long v = strtol(val, &end, 10);
      if (!*val || *end || v < 1 || v > 86400) {
        hs_error("--%s needs a number from 1 to 86400, not '%s'", name, val);
        return 2;
      }
    }
    if (!strcmp(name, "dump-signal")) {
      int sig = 0;
      const char *v = strncmp(val, "SIG", 3) ? val : val + 3;
      if (!strcmp(v, "USR1")) sig = SIGUSR1;
      else if (!strcmp(v, "USR2")) sig = SIGUSR2;
      else if (!strcmp(v, "PROF")) sig = SIGPROF;
      else if (!strcmp(v, "URG")) sig = SIGURG;
      else {
        char *end;
        long n = strtol(v, &end, 10);
        if (*v && !*end && n > 0 && n < 65 && n != SIGKILL && n != SIGSTOP) sig = (int)n;
      }
      if (!sig) {
        hs_error("--dump-signal wants USR1, USR2, PROF, URG or a signal number, not '%s'", val);
        return 2;
      }
      char num[16];
      snprintf(num, sizeof num, "%d", sig);
      append_opt(opts, sizeof opts, key, num);
      continue;
    }
    if (!strcmp(name, "http-allow-remote")) {
      append_opt(opts, sizeof opts, key, "1");
      continue;
    }
    if (!strcmp(name, "output") || !strcmp(name, "http-token-file")) {
      struct stat st;
      int want_dir = !strcmp(name, "output");
      if (stat(val, &st) != 0 || (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) ||
          access(val, want_dir ? W_OK : R_OK) != 0) {
        hs_error("--%s %s is not a %s — %s", name, val, want_dir ? "writable directory" : "readable file",
                 want_dir ? "create it first" : "check the path");
        return 2;
      }
      char abs[PATH_MAX];
      if (!realpath(val, abs) || strchr(abs, ',')) {
        hs_error("--%s %s: cannot use this path (it contains ',')", name, val);
        return 2;
      }
      append_opt(opts, sizeof opts, key, abs);
      continue;
    }
    if (!strcmp(name, "http") && (!strchr(val, ':') || strchr(val, ','))) {
      hs_error("--http wants ADDR:PORT such as 127.0.0.1:6060, not '%s'", val);
      return 2;
    }
    if (!strcmp(name, "mode")) {
      if (strcmp(val, "full") && strcmp(val, "sample")) {
        hs_error("--mode must be full or sample, not '%s'", val);
        return 2;
      }

    } else if (!strcmp(name, "leak-check")) {
      if (strcmp(val, "full") && strcmp(val, "summary") && strcmp(val, "no")) {
        hs_error("--leak-check must be full, summary or no, not '%s'", val);
        return 2;
      }
    } else if (!strcmp(name, "show-leak-kinds")) {
      int ok;
      hs_parse_kinds(val, &ok);
      if (!ok) {
        hs_error("--show-leak-kinds: '%s' is not a list of definite,indirect,possible,reachable (or all, none)", val);
        return 2;
      }
      char conv[256];
      snprintf(conv, sizeof conv, "%s", val);
      for (char *p = conv; *p; p++)
        if (*p == ',') *p = '+';
      append_opt(opts, sizeof opts, key, conv);
      continue;
    } else if (!strcmp(name, "suppressions")) {
      char err[512];
      struct hs_supp_list supp = {0};
      int bad = hs_supp_load(&supp, val, err, sizeof err);
      hs_supp_free(&supp);
      if (bad) {
        hs_error("%s", err);
        return 2;
      }
      char abs[PATH_MAX];
      if (!realpath(val, abs)) snprintf(abs, sizeof abs, "%s", val);
      if (strchr(abs, ',') || strchr(abs, ':')) {
        hs_error("suppression file name %s contains ',' or ':' — rename it", abs);
        return 2;
      }
      append_opt(opts, sizeof opts, key, abs);
      continue;
    } else if (!strcmp(name, "error-exitcode") || !strcmp(name, "max-frames")) {
      char *end;
      long v = strtol(val, &end, 10);
      if (!*val || *end || v < 0 || v > 255 * (strcmp(name, "max-frames") ? 1 : 4)) {
        hs_error("--%s needs a number (0-%d), not '%s'", name, strcmp(name, "max-frames") ? 255 : 256, val);
        return 2;
      }
    } else if (!strcmp(name, "follow-children")) {
      if (strcmp(val, "yes") && strcmp(val, "no")) {
        hs_error("--follow-children must be yes or no, not '%s'", val);
        return 2;
      }
    } else if (!strcmp(name, "sample-rate")) {
      unsigned long z;
      if (hs_parse_size(val, &z) || !z) {
        hs_error("--sample-rate needs a size in bytes such as 512K, not '%s'", val);
        return 2;
      }
    } else if (!strcmp(name, "report")) {
      if (check_report_path(val)) return 2;
      if (strchr(val, ',')) {
        hs_error("--report path %s contains ',' — choose another name", val);
        return 2;
      }
      char abs[PATH_MAX];
      if (val[0] != '/' && getcwd(abs, sizeof abs)) {
        size_t n = strlen(abs);
        snprintf(abs + n, sizeof abs - n, "/%s", val);
        val = abs;
      }
      append_opt(opts, sizeof opts, key, val);
      continue;
    }
    append_opt(opts, sizeof opts, key, val);
  }
  if (optind < argc && !strcmp(argv[optind], "--")) optind++;
  if (optind >= argc) {
    hs_error("no program given — usage: heapscope run [OPTIONS] -- PROGRAM [ARGS...]");
    return 2;
  }
  char prog[PATH_MAX];
  if (hs_find_program(argv[optind], prog, sizeof prog)) {
    hs_error("cannot run %s: %s — check the name and PATH", argv[optind],
             strchr(argv[optind], '/') && access(argv[optind], F_OK) == 0 ? "not an executable file"
                                                                           : "no such program");
    return 127;
  }
  const char *why = why_no_agent(prog);
  if (why)
    fprintf(stderr, "heapscope: warning: %s runs without heapscope: %s\n", prog, why);
  char agent[PATH_MAX];
  if (hs_find_agent(agent, sizeof agent)) {
    hs_error("cannot find libheapscope.so next to %s or under its install prefix — reinstall heapscope or set HEAPSCOPE_AGENT",
             hs_self_path());
    return 2;
  }

  /* The program's own pid: the process whose report is --report. */
  append_opt(opts, sizeof opts, "root_pid", "");
  snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%d", (int)getpid());
  /* Which file is run's stderr: a child the program starts with its stderr
   * elsewhere (a pipe its parent reads) prints no report there. */
  struct stat st;
  if (!fstat(2, &st)) {
    append_opt(opts, sizeof opts, "run_stderr", "");
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
  }
  const char *pre = getenv("LD_PRELOAD");
  char preload[PATH_MAX * 2];
  if (pre && *pre)
    snprintf(preload, sizeof preload, "%s:%s", agent, pre);
  else
    snprintf(preload, sizeof preload, "%s", agent);
  if (setenv("HEAPSCOPE_OPTIONS", opts, 1) || setenv("LD_PRELOAD", preload, 1)) {
    hs_error("cannot set the environment: %s", strerror(errno));
    return 2;
  }
  execv(prog, argv + optind);
  hs_error("cannot run %s: %s", prog, strerror(errno));
  return 127;
}
