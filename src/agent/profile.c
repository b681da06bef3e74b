/* The agent's side of heap profiles: snapshots of the heap per call stack
 * (exact in full mode, unbiased samples in sample mode), the API the report
 * library calls back into, and starting the HTTP server. The encoding, the
 * symbolization and the server live in libheapscope_report.so, loaded on
 * first use. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/hs_report.h"
#include "hs.h"

struct acc {
  double *v; /* per stack id: inuse count, inuse bytes */
  uint32_t nst;
};

static void add_block(uintptr_t addr, uint64_t meta, void *arg) {
  (void)addr;
  struct acc *a = arg;
  uint32_t id = hs_meta_stack(meta);
  if (id > a->nst) return;
  size_t size = hs_meta_size(meta);
  double w = hs_sample_weight(size);
  a->v[2 * id] += w;
  a->v[2 * id + 1] += w * (double)size;
}

static int snapshot(struct hs_prof_snapshot *out) {
  int saved = hs_in_agent;
  hs_in_agent = 1;
  memset(out, 0, sizeof *out);
  struct acc a = {.nst = hs_depot_count()};
  a.v = hs_mmap((a.nst + 1) * 2 * sizeof *a.v);
  out->cap = a.nst + 1;
  out->stacks = hs_mmap(out->cap * sizeof *out->stacks);
  if (!a.v || !out->stacks) {
    if (a.v) hs_munmap(a.v, (a.nst + 1) * 2 * sizeof *a.v);
    if (out->stacks) hs_munmap(out->stacks, out->cap * sizeof *out->stacks);
    hs_in_agent = saved;
    return -1;
  }
  hs_table_foreach_locked(add_block, &a);
  for (uint32_t id = 1; id <= a.nst; id++) {
    uint64_t cfp, bytes;
    hs_depot_alloc_stats(id, &cfp, &bytes);
    if (!cfp && !a.v[2 * id]) continue;
    struct hs_prof_stack *s = &out->stacks[out->n++];
    s->frames = hs_depot_get(id, &s->nframes);
    if (!s->frames) s->nframes = 0;
    s->alloc_count = (double)cfp / HS_FP;
    s->alloc_bytes = (double)bytes;
    s->inuse_count = a.v[2 * id];
    s->inuse_bytes = a.v[2 * id + 1];
  }
  hs_munmap(a.v, (a.nst + 1) * 2 * sizeof *a.v);
  out->period = hs_sampling ? hs_sample_rate : 1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  out->time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  hs_in_agent = saved;
  return 0;
}

static void snapshot_free(struct hs_prof_snapshot *s) {
  if (s->stacks) hs_munmap(s->stacks, s->cap * sizeof *s->stacks);
  s->stacks = NULL;
}

static void enter_agent_thread(void) {
  hs_in_agent = 1;
  if (hs_sampling) hs_until_sample = LONG_MAX; /* its allocations never reach a sample point */
}

static size_t threads(struct hs_report_thread **out) { return hs_threads_snapshot(out, 1, 0); }

static size_t thread_count(void) {
  size_t n = 1;
  hs_threads_lock();
  for (struct hs_thread *t = hs_threads_list(); t; t = t->next) n += t->alive != 0;
  hs_threads_unlock();
  return n;
}

struct hs_agent_api hs_api = {
    .abi = HS_REPORT_ABI,
    .snapshot = snapshot,
    .snapshot_free = snapshot_free,
    .enter_agent_thread = enter_agent_thread,
    .thread_count = thread_count,
    .threads = threads,
    .threads_free = hs_threads_snapshot_free,
    .mode = "full",
};

void *hs_report_lib(void) {
  static void *handle;
  static int tried;
  /* a forked child: its code calls dl_iterate_phdr, and it is loaded only
   * where a dlopen is safe (threads.c) */
  if (!hs_loader_usable()) return NULL;
  if (tried) return handle;
  if (!hs_loader_may_open()) return NULL;
  tried = 1;
  Dl_info info;
  char path[PATH_MAX];
  if (!dladdr((void *)&hs_report_lib, &info) || !info.dli_fname) return NULL;
  const char *slash = strrchr(info.dli_fname, '/');
  size_t dir = slash ? (size_t)(slash - info.dli_fname) : 0;
  if (dir + 32 >= sizeof path) return NULL;
  memcpy(path, info.dli_fname, dir);
  hs_snprintf(path + dir, sizeof path - dir, "%slibheapscope_report.so", dir ? "/" : "");
  int saved = hs_in_agent;
  hs_in_agent = 1;
  hs_loader_depth++;
  handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  hs_loader_depth--;
  if (!handle) hs_warn("cannot load %s (%s)", path, dlerror());
  hs_in_agent = saved;
  return handle;
}

/* ---- numbered dumps: periodic and on a signal --------------------------- */

static sem_t wake;
static unsigned dump_seq;

static void on_dump_signal(int sig) {
  (void)sig;
  sem_post(&wake); /* async-signal-safe; the dumper thread does the work */
}

static void numbered_path(char *out, size_t len, unsigned seq) {
  char exe[PATH_MAX];
  ssize_t n = hs_readlink_path("/proc/thread-self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  const char *prog = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : "prog";
  hs_snprintf(out, len, "%s/heapscope.%s.%d.heap.%04u.pb.gz", hs_opt.output ? hs_opt.output : ".", prog,
              (int)getpid(), seq);
}

static void *dumper(void *arg) {
  (void)arg;
  hs_in_agent = 1; /* also inherited: created by the agent */
  hs_profile_write_fn w = (hs_profile_write_fn)hs_report_sym(HS_PROFILE_WRITE_SYM);
  if (!w) return NULL;
  for (;;) {
    int r;
    if (hs_opt.snapshot_interval > 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += hs_opt.snapshot_interval;
      r = sem_timedwait(&wake, &ts);
      if (r && errno != ETIMEDOUT) continue; /* EINTR */
    } else {
      r = sem_wait(&wake);
      if (r) continue;
    }
    if (!atomic_load(&hs_active)) return NULL;
    char path[PATH_MAX];
    unsigned seq = ++dump_seq;
    numbered_path(path, sizeof path, seq);
    int e = w(&hs_api, HS_PROF_HEAP, path);
    if (e) hs_warn("cannot write heap dump %s: %s", path, strerror(e));
    if (hs_opt.snapshot_keep > 0 && seq > (unsigned)hs_opt.snapshot_keep) {
      numbered_path(path, sizeof path, seq - (unsigned)hs_opt.snapshot_keep);
      hs_unlink_path(path);
    }
  }
}

static void start_dumper(void) {
  if (hs_opt.snapshot_interval <= 0 && hs_opt.dump_signal <= 0) return;
  if (sem_init(&wake, 0, 0)) return;
  if (hs_opt.dump_signal > 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_dump_signal;
    sa.sa_flags = SA_RESTART;
    if (hs_sigaction((int)hs_opt.dump_signal, &sa, NULL))
      hs_warn("cannot use signal %ld for heap dumps: %s", hs_opt.dump_signal, strerror(errno));
  }
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  int saved = hs_in_agent;
  hs_in_agent = 1; /* the thread is the agent's */
  sigset_t mask;
  hs_fatal_block(&mask);
  if (pthread_create(&t, &a, dumper, NULL)) hs_warn("cannot start the heap dump thread");
  hs_fatal_unblock(&mask);
  hs_in_agent = saved;
  pthread_attr_destroy(&a);
}

void *hs_report_sym(const char *name) {
  void *h = hs_report_lib();
  return h ? dlsym(h, name) : NULL;
}

void hs_profile_start(void) {
  start_dumper();
  /* The endpoint is the process's that `heapscope run` started: its
   * children inherit the option, and each would find the port taken and
   * print a warning into the program's stderr (a shell script: one per
   * command it runs). A child can still serve through heapscope_http_start. */
  if (!hs_opt.http || !*hs_opt.http || !hs_is_root_process()) return;
  hs_serve_start_fn start = (hs_serve_start_fn)hs_report_sym(HS_SERVE_START_SYM);
  if (!start) return;
  int saved = hs_in_agent;
  hs_in_agent = 1; /* the server's threads inherit the mark, and the mask */
  sigset_t mask;
  hs_fatal_block(&mask);
  start(&hs_api, hs_opt.http, (int)hs_opt.http_allow_remote, hs_opt.http_token_file);
  hs_fatal_unblock(&mask);
  hs_in_agent = saved;
}

/* ---- public API ----------------------------------------------------------- */

HS_EXPORT int __heapscope_dump(const char *path) {
  if (!atomic_load(&hs_active) || !path) return -1;
  hs_profile_write_fn w = (hs_profile_write_fn)hs_report_sym(HS_PROFILE_WRITE_SYM);
  if (!w) return -1;
  int saved = hs_in_agent, cs = hs_cancel_off();
  hs_in_agent = 1;
  int r = w(&hs_api, HS_PROF_HEAP, path);
  hs_in_agent = saved;
  hs_cancel_restore(cs);
  return r ? -1 : 0;
}

HS_EXPORT int __heapscope_http_start(const char *addr) {
  if (!atomic_load(&hs_active)) return -1;
  hs_serve_start_fn start = (hs_serve_start_fn)hs_report_sym(HS_SERVE_START_SYM);
  if (!start) return -1;
  int saved = hs_in_agent, cs = hs_cancel_off();
  hs_in_agent = 1;
  sigset_t mask;
  hs_fatal_block(&mask);
  int r = start(&hs_api, addr && *addr ? addr : "127.0.0.1:6060", (int)hs_opt.http_allow_remote,
                hs_opt.http_token_file);
  hs_fatal_unblock(&mask);
  hs_in_agent = saved;
  hs_cancel_restore(cs);
  return r;
}
