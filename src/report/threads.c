/* The threads report: threads alive at exit (the C form of leaked
 * goroutines) and joinable threads that ended but were never joined, grouped
 * by (creation stack, current stack), in text, JSON and pprof (the goroutine
 * and threadcreate profiles), with `thread:PATTERN` suppressions. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "threads.h"

static const struct {
  long nr;
  const char *name;
} syscalls[] = {{0, "read"},        {1, "write"},       {7, "poll"},           {23, "select"},
                {34, "pause"},      {35, "nanosleep"},  {43, "accept"},        {45, "recvfrom"},
                {47, "recvmsg"},    {61, "wait4"},      {130, "rt_sigsuspend"}, {202, "futex"},
                {228, "clock_gettime"}, {230, "clock_nanosleep"}, {232, "epoll_wait"}, {247, "waitid"},
                {270, "pselect6"},  {271, "ppoll"},     {281, "epoll_pwait"},  {288, "accept4"},
                {299, "recvmmsg"},  {441, "epoll_pwait2"}};

const char *hs_syscall_name(long nr) {
  for (size_t i = 0; i < sizeof syscalls / sizeof *syscalls; i++)
    if (syscalls[i].nr == nr) return syscalls[i].name;
  return NULL;
}

const char *hs_thread_state(const struct hs_report_thread *t) {
  if (t->exited_unjoined) return "exited_unjoined";
  if (t->state == 'R') return "running";
  if (t->state == 'S' || t->state == 'D' || t->state == 'T' || t->state == 't') return "blocked";
  return "unknown";
}

/* "blocked in read (pipe_read), 2.1 s" */
void hs_thread_wait(const struct hs_report_thread *t, char *out, size_t len) {
  if (t->exited_unjoined) {
    snprintf(out, len, "exited, never joined: pins %llu bytes of stack", (unsigned long long)t->stack_bytes);
    return;
  }
  if (t->state == 'R') {
    snprintf(out, len, "running");
    return;
  }
  char sc[48] = "";
  const char *n = hs_syscall_name(t->syscall);
  if (n)
    snprintf(sc, sizeof sc, " in %s", n);
  else if (t->syscall >= 0)
    snprintf(sc, sizeof sc, " in syscall %ld", t->syscall);
  int o = snprintf(out, len, "%s%s", t->state == 'D' ? "waiting uninterruptibly" : "blocked", sc);
  if (t->wchan[0] && o >= 0 && (size_t)o < len) o += snprintf(out + o, len - (size_t)o, " (%s)", t->wchan);
  if (t->seconds_in_state >= 0 && o >= 0 && (size_t)o < len)
    snprintf(out + o, len - (size_t)o, ", %.1f s", t->seconds_in_state);
}

static int frames_match(struct hs_symbolizer *sym, const uintptr_t *f, unsigned n, const char *pattern) {
  for (unsigned i = 0; i < n; i++) {
    const struct hs_frame *fr;
    int k = hs_sym_lookup(sym, f[i] - 1, &fr);
    for (int j = 0; j < k; j++)
      if (hs_supp_match(pattern, fr[j].function) || hs_supp_match(pattern, fr[j].file) ||
          hs_supp_match(pattern, fr[j].module))
        return 1;
  }
  return 0;
}

int hs_thread_suppressed(struct hs_symbolizer *sym, const struct hs_supp_list *supp,
                         const struct hs_report_thread *t) {
  for (size_t s = 0; s < supp->n; s++) {
    if (!supp->v[s].is_thread) continue;
    const char *p = supp->v[s].pattern;
    if (hs_supp_match(p, t->name)) return 1;
    if (t->start_routine) {
      uintptr_t sr = t->start_routine + 1; /* a function address, not a return address */
      if (frames_match(sym, &sr, 1, p)) return 1;
    }
    if (frames_match(sym, t->created, t->ncreated, p) || frames_match(sym, t->current, t->ncurrent, p)) return 1;
  }
  return 0;
}

static uint64_t hash_frames(const uintptr_t *f, unsigned n) {
  uint64_t h = 1469598103934665603ull ^ n;
  for (unsigned i = 0; i < n; i++) h = (h ^ f[i]) * 1099511628211ull;
  return h;
}

/* Groups: same creation stack, same current stack, same state. Returns the
 * number of groups; group[i] is the index of the first thread of group i,
 * of[t] the group of thread t. */
size_t hs_thread_groups(const struct hs_report_thread *t, size_t n, const int *skip, size_t *first, size_t *of) {
  size_t g = 0;
  for (size_t i = 0; i < n; i++) {
    of[i] = (size_t)-1;
    if (skip && skip[i]) continue;
    uint64_t hi = hash_frames(t[i].current, t[i].ncurrent);
    for (size_t k = 0; k < g; k++) {
      const struct hs_report_thread *x = &t[first[k]];
      if (x->created == t[i].created && x->exited_unjoined == t[i].exited_unjoined &&
          !strcmp(hs_thread_state(x), hs_thread_state(&t[i])) && hash_frames(x->current, x->ncurrent) == hi) {
        of[i] = k;
        break;
      }
    }
    if (of[i] == (size_t)-1) {
      first[g] = i;
      of[i] = g++;
    }
  }
  return g;
}

/* Like valgrind, with stop_at_main the text ends at main: what runs below it
 * is libc's. A run of calls from one place (a recursion: a stack overflow's
 * stack is all of one) is shown once, and counted. The JSON always keeps
 * every frame. */
void hs_text_frames(struct hs_buf *b, struct hs_symbolizer *sym, const uintptr_t *f, unsigned n, const char *prefix,
                    int stop_at_main, const char *if_empty) {
  int first = 1, below_main = 0;
  for (unsigned i = 0; i < n && !below_main; i++) {
    if (i && f[i] == f[i - 1]) {
      unsigned r = i;
      while (r < n && f[r] == f[i]) r++;
      if (r - i >= 2) {
        hs_buf_printf(b, "%s... %u more calls from the same place\n", prefix, r - i);
        i = r - 1;
        continue;
      }
    }
    const struct hs_frame *fr;
    int k = hs_sym_lookup(sym, f[i] - 1, &fr);
    for (int j = 0; j < k; j++) {
      hs_buf_printf(b, "%s%s 0x%lX: %s", prefix, first ? "at" : "by", (unsigned long)fr[j].addr,
                    fr[j].function ? fr[j].function : "???");
      if (fr[j].file)
        hs_buf_printf(b, " (%s:%d)\n", hs_basename(fr[j].file), fr[j].line);
      else if (fr[j].module)
        hs_buf_printf(b, " (in %s)\n", fr[j].module);
      else
        hs_buf_printf(b, "\n");
      first = 0;
      if (stop_at_main && fr[j].function && !strcmp(fr[j].function, "main")) below_main = 1;
    }
  }
  if (first) hs_buf_printf(b, "%s%s\n", prefix, if_empty);
}

void hs_json_frames(struct hs_buf *b, struct hs_symbolizer *sym, const uintptr_t *f, unsigned n) {
  hs_buf_printf(b, "[");
  int first = 1;
  for (unsigned i = 0; i < n; i++) {
    const struct hs_frame *fr;
    int k = hs_sym_lookup(sym, f[i] - 1, &fr);
    for (int j = 0; j < k; j++) {
      hs_buf_printf(b, "%s{\"address\": \"0x%lx\", \"function\": ", first ? "" : ", ", (unsigned long)fr[j].addr);
      hs_buf_json_str(b, fr[j].function);
      hs_buf_printf(b, ", \"file\": ");
      hs_buf_json_str(b, fr[j].file);
      hs_buf_printf(b, ", \"line\": %d, \"module\": ", fr[j].line);
      hs_buf_json_str(b, fr[j].module);
      if (fr[j].inlined) hs_buf_printf(b, ", \"inlined\": true");
      hs_buf_printf(b, "}");
      first = 0;
    }
  }
  hs_buf_printf(b, "]");
}

static const char *routine_name(struct hs_symbolizer *sym, uintptr_t a) {
  if (!a) return NULL;
  const struct hs_frame *fr;
  int k = hs_sym_lookup(sym, a, &fr);
  return k > 0 ? fr[k - 1].function : NULL;
}

void hs_threads_text(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_thread *t, size_t n,
                     const int *skip, int pid) {
  size_t *first = calloc(n + 1, sizeof *first), *of = calloc(n + 1, sizeof *of);
  if (!first || !of) {
    free(first);
    free(of);
    return;
  }
  size_t g = hs_thread_groups(t, n, skip, first, of);
  size_t alive = 0, unjoined = 0;
  uint64_t pinned = 0;
  for (size_t i = 0; i < n; i++) {
    if (skip && skip[i]) continue;
    if (t[i].exited_unjoined) {
      unjoined++;
      pinned += t[i].stack_bytes;
    } else {
      alive++;
    }
  }
  char pfx[32];
  snprintf(pfx, sizeof pfx, "==%d==    ", pid);
  for (size_t k = 0; k < g; k++) {
    const struct hs_report_thread *x = &t[first[k]];
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) cnt += of[i] == k;
    char wait[160];
    hs_thread_wait(x, wait, sizeof wait);
    hs_buf_printf(b, "==%d== %zu thread%s %s: ", pid, cnt, cnt == 1 ? "" : "s", wait);
    int shown = 0;
    for (size_t i = 0; i < n && shown < 8; i++)
      if (of[i] == k) hs_buf_printf(b, "%s%d \"%s\"", shown++ ? ", " : "", (int)t[i].tid, t[i].name);
    hs_buf_printf(b, "%s\n", cnt > 8 ? ", ..." : "");
    if (!x->exited_unjoined)
      hs_text_frames(b, sym, x->current, x->ncurrent, pfx, 0, "(stack not available: the thread did not answer)");
    const char *r = routine_name(sym, x->start_routine);
    hs_buf_printf(b, "==%d==  created%s%s at:\n", pid, r ? " with start routine " : "", r ? r : "");
    hs_text_frames(b, sym, x->created, x->ncreated, pfx, 1, "(unknown)");
    hs_buf_printf(b, "==%d== \n", pid);
  }
  hs_buf_printf(b, "==%d== THREAD SUMMARY: %zu still running at exit, %zu exited but never joined", pid, alive,
                unjoined);
  if (unjoined) hs_buf_printf(b, " (pinning %llu bytes of stack)", (unsigned long long)pinned);
  hs_buf_printf(b, "\n==%d== \n", pid);
  free(first);
  free(of);
}

void hs_threads_json(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_thread *t, size_t n,
                     const int *skip) {
  size_t *first = calloc(n + 1, sizeof *first), *of = calloc(n + 1, sizeof *of);
  if (!first || !of) {
    free(first);
    free(of);
    hs_buf_printf(b, "[]");
    return;
  }
  size_t g = hs_thread_groups(t, n, skip, first, of);
  hs_buf_printf(b, "[");
  for (size_t k = 0; k < g; k++) {
    const struct hs_report_thread *x = &t[first[k]];
    hs_buf_printf(b, "%s\n    {\"tid\": %d, \"name\": ", k ? "," : "", (int)x->tid);
    hs_buf_json_str(b, x->name);
    hs_buf_printf(b, ", \"state\": \"%s\", \"count\": ", hs_thread_state(x));
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) cnt += of[i] == k;
    hs_buf_printf(b, "%zu, \"tids\": [", cnt);
    int c = 0;
    for (size_t i = 0; i < n; i++)
      if (of[i] == k) hs_buf_printf(b, "%s%d", c++ ? ", " : "", (int)t[i].tid);
    hs_buf_printf(b, "]");
    if (!x->exited_unjoined) {
      const char *sc = hs_syscall_name(x->syscall);
      hs_buf_printf(b, ", \"wait\": {\"syscall\": ");
      hs_buf_json_str(b, sc);
      hs_buf_printf(b, ", \"wchan\": ");
      hs_buf_json_str(b, x->wchan[0] ? x->wchan : NULL);
      hs_buf_printf(b, "}");
      if (x->seconds_in_state >= 0) hs_buf_printf(b, ", \"seconds_in_state\": %.3f", x->seconds_in_state);
    } else {
      hs_buf_printf(b, ", \"stack_bytes\": %llu", (unsigned long long)x->stack_bytes);
    }
    hs_buf_printf(b, ", \"seconds_alive\": %.3f, \"detached\": %s, \"start_routine\": ", x->seconds_alive,
                  x->detached ? "true" : "false");
    hs_buf_json_str(b, routine_name(sym, x->start_routine));
    hs_buf_printf(b, ",\n     \"created_at\": ");
    hs_json_frames(b, sym, x->created, x->ncreated);
    hs_buf_printf(b, ",\n     \"current\": ");
    hs_json_frames(b, sym, x->current, x->ncurrent);
    hs_buf_printf(b, "}");
  }
  hs_buf_printf(b, "%s]", g ? "\n  " : "");
  free(first);
  free(of);
}

/* For heapscope_threads_check: the threads in text, into a caller's buffer. */
__attribute__((visibility("default"))) void hs_threads_format(const struct hs_report_thread *t, size_t n, char *out,
                                                               size_t len) {
  if (!out || !len) return;
  struct hs_symbolizer *sym = hs_sym_open_pid(getpid());
  struct hs_buf b = {0};
  if (!n) hs_buf_printf(&b, "no leaked threads\n");
  if (sym && n) hs_threads_text(&b, sym, t, n, NULL, (int)getpid());
  snprintf(out, len, "%s", b.s ? b.s : "");
  hs_buf_free(&b);
  hs_sym_close(sym);
}
