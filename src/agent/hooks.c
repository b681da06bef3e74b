/* Interposition: the malloc family and every C++ operator new/delete.
 * Each hook forwards to the real allocator and records the block in the
 * live-block table with its call stack. The fast path is a flag test; all
 * recording lives in the out-of-line record/forget functions. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/single_threaded.h>

#include "hs.h"

struct hs_real hs_real;
HS_TLS int hs_in_agent;
/* Set while this thread is in glibc's allocator for the program (full
 * mode's calls; sample mode's fast paths are tail calls and cannot say):
 * hs_hooks_at_exit. */
static HS_TLS int in_glibc;

/* The exit heap: once the exit report runs in a signal handler that
 * interrupted glibc's allocator (in_glibc), glibc's heap may be half
 * changed, and any call into it may abort the program ("corrupted
 * double-linked list"). From then on every allocation of the process comes
 * from the agent's own pages (zeroed, never given back: the process is
 * ending) and nothing is given back to glibc; frees only leave the table.
 * Cold paths only: full mode reaches them on every call, and sample mode
 * never sets in_glibc. */
static atomic_int exit_heap;
#define EH_MAGIC 0x6873657869746870ull
struct eh_hdr {
  size_t size;
  uint64_t magic;
};
/* eh blocks handed out before exit (to signal handlers, EXIT_HEAP): a
 * later free, realloc or malloc_usable_size must know them from glibc's. */
static atomic_int eh_in_use;
static void *eh_alloc(size_t size, size_t align) {
  if (align < 16) align = 16;
  if (size > (SIZE_MAX >> 2) || align > (1u << 20)) return NULL;
  char *raw = hs_alloc(size + align + sizeof(struct eh_hdr));
  if (!raw) return NULL;
  uintptr_t p = ((uintptr_t)raw + sizeof(struct eh_hdr) + align - 1) & ~(uintptr_t)(align - 1);
  struct eh_hdr *h = (struct eh_hdr *)p - 1;
  h->size = size;
  h->magic = EH_MAGIC;
  if (!atomic_load_explicit(&eh_in_use, memory_order_relaxed)) atomic_store(&eh_in_use, 1);
  return (void *)p;
}
/* The usable size of a block of either heap; glibc's is read from its chunk
 * header, which is no call into its allocator's state. */
static size_t eh_size(void *p) {
  const struct eh_hdr *h = (const struct eh_hdr *)p - 1;
  return h->magic == EH_MAGIC ? h->size : hs_real.malloc_usable_size(p);
}
/* Also a signal handler's call that interrupted this thread's own call into
 * glibc's allocator (full mode marks those, in_glibc): glibc's heap may be
 * half changed below it, and re-entering it aborted about 1 run in 10 of
 * tests/progs/sigmalloc.c ("malloc assertion failure in sysmalloc"). Such a
 * call takes its block from the agent's pages, and a free gives nothing
 * back to glibc; the program alone would have re-entered glibc. */
#define EXIT_HEAP() HS_UNLIKELY(atomic_load_explicit(&exit_heap, memory_order_relaxed) || in_glibc)
static inline int is_eh(void *p) {
  return HS_UNLIKELY(atomic_load_explicit(&eh_in_use, memory_order_relaxed)) &&
         ((const struct eh_hdr *)p - 1)->magic == EH_MAGIC;
}
/* A call into glibc's allocator, marked for hs_hooks_at_exit. */
#define GLIBC(call)                                                                    \
  ({                                                                                   \
    in_glibc = 1;                                                                      \
    __typeof__(call) r_ = (call);                                                      \
    in_glibc = 0;                                                                      \
    r_;                                                                                \
  })
atomic_int hs_active;
struct hs_totals hs_totals;
atomic_uintptr_t hs_arena_heaps[HS_MAX_ARENA_HEAPS];
static int real_is_glibc;

/* dlsym may call calloc before the real allocator is known: serve those
 * calls from a static pool. Its blocks are never freed nor tracked. */
static char bootstrap_pool[64 << 10] __attribute__((aligned(64)));
static atomic_size_t bootstrap_used;
static int resolving;

static void *bootstrap_alloc(size_t n) {
  n = (n + 63) & ~(size_t)63;
  size_t off = atomic_fetch_add(&bootstrap_used, n);
  if (off + n > sizeof bootstrap_pool) return NULL;
  hs_filter_add((uintptr_t)(bootstrap_pool + off)); /* free() takes its slow path for it */
  return bootstrap_pool + off;
}

void hs_filter_open(void) {
  memset(hs_sampled_filter, HS_FILTER_CLEAN, sizeof hs_sampled_filter);
  size_t used = atomic_load(&bootstrap_used);
  for (size_t off = 0; off < used && off < sizeof bootstrap_pool; off += 64)
    hs_filter_add((uintptr_t)(bootstrap_pool + off));
}
/* Off: the countdown never reaches zero and the filter is clean but for the
 * bootstrap pool, so malloc and free take their forwarding fast paths, as in
 * sample mode between samples. Without this, every call of a process the
 * agent ignores went through the slow paths (1.6x the microbenchmark's time
 * alone). Each thread's countdown is set by its first malloc_slow. */
static atomic_int hooks_off;
void hs_hooks_off(void) {
  atomic_store(&hooks_off, 1);
  hs_filter_open();
  hs_until_sample = HS_COUNTDOWN_OFF;
}

static inline int is_bootstrap(const void *p) {
  return (const char *)p >= bootstrap_pool && (const char *)p < bootstrap_pool + sizeof bootstrap_pool;
}

void hs_hooks_resolve(void) {
  if (hs_real.malloc || resolving) return;
  resolving = 1;
#define R(name) hs_real.name = (__typeof__(hs_real.name))dlsym(RTLD_NEXT, #name)
  R(free); R(calloc); R(realloc); R(reallocarray); R(posix_memalign); R(aligned_alloc);
  R(memalign); R(valloc); R(pvalloc); R(malloc_usable_size); R(_exit); R(_Exit);
  R(pthread_create); R(sigaction);
#undef R
  void *m = dlsym(RTLD_NEXT, "malloc");
  void *glibc_m = dlsym(RTLD_NEXT, "__libc_malloc");
  real_is_glibc = m && m == glibc_m;
  hs_table_units_exclusive = real_is_glibc;
  hs_real.malloc = (void *(*)(size_t))m;
  resolving = 0;
}

/* The file the real malloc comes from when it is not glibc's (jemalloc or
 * tcmalloc linked or preloaded by the user, another interposer), else NULL.
 * The leak check knows glibc's free memory (the main arena, its heaps, its
 * free lists) and never scans it; another allocator's free chunks and
 * metadata look like program data, and their stale pointers keep lost
 * blocks "reachable" (with jemalloc preloaded, 24 of 101 lost blocks were
 * reported lost). */
const char *hs_hooks_foreign_malloc(void) {
  Dl_info di;
  if (real_is_glibc || !hs_real.malloc) return NULL;
  return dladdr((void *)hs_real.malloc, &di) && di.dli_fname ? di.dli_fname : "an unknown module";
}

/* ---- accounting ---------------------------------------------------------
 * Counters are per thread (one writer, no atomic read-modify-write on the
 * hot path) and summed on read. The in-use total feeds the peak through a
 * per-thread delta flushed every 256 events or 256 KiB, so the peak is exact
 * to within that much per thread. */
struct tstats {
  struct tstats *next;
  struct tstats *next_free; /* on stats_free, under stats_lock */
  atomic_ulong allocs, frees, bytes;
  long delta_bytes, delta_blocks;
  unsigned events;
};
static _Atomic(struct tstats *) all_stats;
static HS_TLS struct tstats *my_stats;
/* A thread's counters go back here when it ends, for the next thread to
 * take: their sums stay, so the totals stay right. Before the eleventh stop
 * every thread took new ones for good: 80,000 threads created and joined
 * one after another grew the process by 15 MiB, and every read of the
 * totals walked all of them. */
static struct tstats *stats_free;
static hs_lock_t stats_lock;
static HS_TLS int stats_done; /* this thread gave its counters back */

static void push_stats(struct tstats *s) {
  s->next = atomic_load(&all_stats);
  while (!atomic_compare_exchange_weak(&all_stats, &s->next, s))
    ;
}

static HS_COLD struct tstats *stats_slow(void) {
  if (stats_done) return NULL;
  struct tstats *s = NULL;
  /* waits a little only: a signal handler may interrupt this very code */
  if (hs_trylock_a_little(&stats_lock)) {
    if ((s = stats_free)) stats_free = s->next_free;
    hs_unlock(&stats_lock);
  }
  if (s) return my_stats = s;
  /* a cache line of its own: other threads only read it at report time */
  char *raw = hs_alloc(sizeof(struct tstats) + 128);
  if (!raw) return NULL;
  s = (struct tstats *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  push_stats(s);
  my_stats = s;
  return s;
}

static void flush_delta(struct tstats *s) {
  long cur = atomic_fetch_add_explicit(&hs_totals.cur_bytes, s->delta_bytes, memory_order_relaxed) + s->delta_bytes;
  long blk = atomic_fetch_add_explicit(&hs_totals.cur_blocks, s->delta_blocks, memory_order_relaxed) + s->delta_blocks;
  s->delta_bytes = s->delta_blocks = 0;
  s->events = 0;
  long pk = atomic_load_explicit(&hs_totals.peak_bytes, memory_order_relaxed);
  while (cur > pk && !atomic_compare_exchange_weak_explicit(&hs_totals.peak_bytes, &pk, cur, memory_order_relaxed,
                                                             memory_order_relaxed))
    ;
  long pb = atomic_load_explicit(&hs_totals.peak_blocks, memory_order_relaxed);
  while (blk > pb && !atomic_compare_exchange_weak_explicit(&hs_totals.peak_blocks, &pb, blk, memory_order_relaxed,
                                                             memory_order_relaxed))
    ;
}

/* Calls after the thread gave its counters back (other threads' TLS
 * destructors allocate and free), or with no memory for counters: shared
 * counters, with atomic adds. */
static struct tstats orphan;
static atomic_int orphan_listed;
static HS_COLD void account_orphan(long bytes, long blocks, int is_alloc) {
  if (!atomic_exchange(&orphan_listed, 1)) push_stats(&orphan);
  if (is_alloc) {
    atomic_fetch_add_explicit(&orphan.allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&orphan.bytes, (unsigned long)bytes, memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(&orphan.frees, 1, memory_order_relaxed);
  }
  struct tstats d = {.delta_bytes = is_alloc ? bytes : -bytes, .delta_blocks = is_alloc ? blocks : -blocks};
  flush_delta(&d);
}

/* At the thread's end: its pending delta into the totals, its counters to
 * the next thread. */
static void release_stats(void) {
  struct tstats *s = my_stats;
  stats_done = 1;
  if (!s) return;
  my_stats = NULL;
  flush_delta(s);
  if (hs_trylock_a_little(&stats_lock)) {
    s->next_free = stats_free;
    stats_free = s;
    hs_unlock(&stats_lock);
  } /* else (after a fork, its holder is gone): kept, still summed, not reused */
}

#define BUMP(field, v) atomic_store_explicit(&s->field, atomic_load_explicit(&s->field, memory_order_relaxed) + (v), memory_order_relaxed)

static inline void account(long bytes, long blocks, int is_alloc) {
  struct tstats *s = my_stats;
  if (HS_UNLIKELY(!s) && !(s = stats_slow())) {
    account_orphan(bytes, blocks, is_alloc);
    return;
  }
  if (is_alloc) {
    BUMP(allocs, 1);
    BUMP(bytes, (unsigned long)bytes);
  } else {
    BUMP(frees, 1);
  }
  s->delta_bytes += is_alloc ? bytes : -bytes;
  s->delta_blocks += is_alloc ? blocks : -blocks;
  if (HS_UNLIKELY(++s->events >= 256 || s->delta_bytes > (256 << 10) || s->delta_bytes < -(256 << 10)))
    flush_delta(s);
}

void hs_totals_read(struct hs_totals_snapshot *t) {
  memset(t, 0, sizeof *t);
  if (my_stats) flush_delta(my_stats);
  for (struct tstats *s = atomic_load(&all_stats); s; s = s->next) {
    t->allocs += atomic_load_explicit(&s->allocs, memory_order_relaxed);
    t->frees += atomic_load_explicit(&s->frees, memory_order_relaxed);
    t->bytes += atomic_load_explicit(&s->bytes, memory_order_relaxed);
    t->pending_bytes += s->delta_bytes;
    t->pending_blocks += s->delta_blocks;
  }
  t->cur_bytes = atomic_load(&hs_totals.cur_bytes) + t->pending_bytes;
  t->cur_blocks = atomic_load(&hs_totals.cur_blocks) + t->pending_blocks;
  t->peak_bytes = atomic_load(&hs_totals.peak_bytes);
  t->peak_blocks = atomic_load(&hs_totals.peak_blocks);
  if (t->cur_bytes > t->peak_bytes) t->peak_bytes = t->cur_bytes;
  if (t->cur_blocks > t->peak_blocks) t->peak_blocks = t->cur_blocks;
}

static void note_arena_heap(uintptr_t p) {
  /* glibc chunk header: bit 2 of the size word marks a non-main arena,
   * whose heap is a 64 MiB-aligned mapping. Remember it so that the leak
   * check never scans the allocator's free memory as a root. */
  uintptr_t hdr = ((const uintptr_t *)p)[-1];
  if (!(hdr & 4) || (hdr & 2)) return;
  uintptr_t base = p & ~(HS_ARENA_HEAP_SIZE - 1);
  static HS_TLS uintptr_t last;
  if (base == last) return;
  last = base;
  for (unsigned i = 0; i < HS_MAX_ARENA_HEAPS; i++) {
    uintptr_t v = atomic_load_explicit(&hs_arena_heaps[i], memory_order_relaxed);
    if (v == base) return;
    if (!v) {
      uintptr_t z = 0;
      if (atomic_compare_exchange_strong(&hs_arena_heaps[i], &z, base) || z == base) return;
    }
  }
}

/* The recording keeps errno: a call that succeeds leaves it as it was
 * (glibc's free promises it, and programs test errno after readdir and the
 * like, which allocate). A capture may set it on its way: the first one of
 * a thread finds its stack's bounds, a rule miss reads CFI with libdw, the
 * libunwind fallback probes addresses. */
static HS_COLD void record(void *p, size_t size) {
  int saved_errno = errno;
  hs_in_agent = 1;
  hs_table_prefetch((uintptr_t)p);
  uint32_t id = hs_stack_capture((unsigned)hs_opt.max_frames);
  hs_depot_count_alloc(id, (uint64_t)HS_FP, size);
  hs_table_insert((uintptr_t)p, hs_meta(size, id));
  if (real_is_glibc) note_arena_heap((uintptr_t)p);
  account((long)size, 1, 1);
  hs_in_agent = 0;
  static HS_TLS unsigned recorded;
  if (HS_UNLIKELY(!(++recorded & 8191))) hs_bypass_poll(); /* RTLD_DEEPBIND plugins (bypass.c) */
  errno = saved_errno;
}

/* Sample mode's slow path: this allocation crossed a sample point. */
static HS_TLS int sampler_ready;
static HS_COLD void record_sample(void *p, size_t size) {
  int saved_errno = errno;
  hs_in_agent = 1;
  if (HS_UNLIKELY(!sampler_ready)) {
    /* A thread's first countdown is drawn at its first allocation. */
    sampler_ready = 1;
    hs_until_sample = hs_next_sample_interval() - (long)size;
    if (hs_until_sample > 0) {
      hs_in_agent = 0;
      errno = saved_errno;
      return;
    }
  }
  hs_until_sample = hs_next_sample_interval();
  {
    uint32_t id = hs_stack_capture((unsigned)hs_opt.max_frames);
    double w = hs_sample_weight(size);
    hs_depot_count_alloc(id, (uint64_t)(w * HS_FP), (uint64_t)(w * (double)size + 0.5));
    hs_table_insert((uintptr_t)p, hs_meta(size, id));
    hs_filter_add((uintptr_t)p);
  }
  hs_in_agent = 0;
  /* RTLD_DEEPBIND plugins (bypass.c), every 16th sample: a sample comes
   * every 512 KiB, a thousand small allocations, and the check's loader
   * call would add to each of them */
  static HS_TLS unsigned samples;
  if (HS_UNLIKELY(!(++samples & 15))) hs_bypass_poll();
  errno = saved_errno;
}

/* Memory the agent's own work allocates (libdw, dlopen, the report library)
 * is recorded without a stack and flagged "ignored": never reported, never
 * profiled, but scanned as a root. The dynamic linker threads such blocks
 * into its lists of loaded objects; without this, the program's own link
 * maps behind them would look lost. */
static HS_COLD void record_agent(void *p, size_t size) {
  if (!hs_sampling && !hs_checking) hs_table_insert((uintptr_t)p, hs_meta(size, 0) | HS_META_IGNORED);
}

static inline void on_alloc(void *p, size_t size) {
  if (HS_UNLIKELY(p == NULL)) return;
  if (HS_UNLIKELY(!atomic_load_explicit(&hs_active, memory_order_relaxed)) && !hs_init_early()) return;
  if (HS_UNLIKELY(hs_in_agent)) {
    record_agent(p, size);
    return;
  }
  if (hs_sampling) {
    hs_until_sample -= (long)size;
    if (HS_LIKELY(hs_until_sample > 0)) return;
    record_sample(p, size);
    return;
  }
  record(p, size);
}

/* An exit-heap block, recorded as glibc's would be. */
static void *eh_track(size_t size, size_t align) {
  void *e = eh_alloc(size, align);
  on_alloc(e, size);
  return e;
}

static inline int is_agent_block(uint64_t meta) {
  return (meta & HS_META_IGNORED) && hs_meta_stack(meta) == HS_STACK_NONE;
}

/* Returns hs_table_remove's answer: -1 when the block cannot leave the
 * table now (a signal handler's free, below which this thread holds the
 * shard's lock). */
static HS_COLD int forget(void *p) {
  uint64_t meta;
  int r = hs_table_remove((uintptr_t)p, &meta);
  if (r > 0 && !is_agent_block(meta)) account((long)hs_meta_size(meta), 1, 0);
  return r;
}

static HS_COLD int forget_sampled(void *p) {
  uint64_t meta;
  int r = hs_table_remove((uintptr_t)p, &meta);
  if (r > 0) hs_filter_del((uintptr_t)p);
  return r;
}

/* Frees that a signal handler made while its thread held the table's lock
 * below it: the block can leave the table only once that frame has let go,
 * and must not go back to glibc before. Finished at the thread's next
 * call into the agent's slow paths; past DEFERRED of them a block is kept
 * for good (a leak of the agent's, never a wrong report). A set low bit:
 * glibc has the block already (the single-threaded free), only the table
 * entry is left. */
#define DEFERRED 16
static HS_TLS uintptr_t deferred[DEFERRED];
static HS_TLS unsigned ndeferred;
static HS_COLD void defer_free(uintptr_t p) {
  if (ndeferred < DEFERRED) deferred[ndeferred++] = p;
}
static HS_COLD void finish_deferred(int give_back) {
  for (unsigned k = ndeferred; k--;) {
    uintptr_t d = deferred[k];
    void *p = (void *)(d & ~(uintptr_t)1);
    int r = hs_sampling ? forget_sampled(p) : forget(p);
    if (r < 0) return; /* still below the holder (a handler within a handler) */
    ndeferred = k;
    if (give_back && !(d & 1)) {
      in_glibc = 1;
      hs_real.free(p);
      in_glibc = 0;
    }
  }
}
#define FINISH_DEFERRED()                           \
  do {                                              \
    if (HS_UNLIKELY(ndeferred)) finish_deferred(1); \
  } while (0)
void hs_hooks_thread_exit(void) {
  FINISH_DEFERRED();
  release_stats();
}

/* The block must leave the table before the memory returns to the
 * allocator: another thread may be handed the same address at once.
 * Returns 0, or -1 when it cannot leave it now (defer_free). */
static inline int on_free(void *p) {
  if (!atomic_load_explicit(&hs_active, memory_order_relaxed)) return 0;
  if (hs_sampling) {
    if (HS_UNLIKELY(!hs_filter_clean((uintptr_t)p))) return forget_sampled(p) < 0 ? -1 : 0;
    return 0;
  }
  int r = forget(p);
  if (HS_UNLIKELY(r == 0)) hs_bypass_unknown_free(); /* a block from past the agent? */
  return r < 0 ? -1 : 0;
}

#define ENSURE_REAL()                                                                  \
  do {                                                                                 \
    if (HS_UNLIKELY(!hs_real.malloc)) hs_hooks_resolve();                              \
  } while (0)

/* ---- the C allocator ---------------------------------------------------- */

static HS_COLD void *malloc_slow(size_t size) {
  ENSURE_REAL();
  if (HS_UNLIKELY(!hs_real.malloc)) return bootstrap_alloc(size);
  if (atomic_load_explicit(&hooks_off, memory_order_relaxed)) {
    hs_until_sample = HS_COUNTDOWN_OFF;
    return hs_real.malloc(size);
  }
  if (EXIT_HEAP()) {
    void *e = eh_track(size, 16);
    hs_until_sample = HS_COUNTDOWN_UNSET; /* a sample would draw a new countdown: stay off the fast path */
    return e;
  }
  FINISH_DEFERRED();
  void *p = GLIBC(hs_real.malloc(size));
  on_alloc(p, size);
  return p;
}

/* Sample mode's fast paths decide before calling the real allocator, so
 * that the call is a tail call: no frame of our own, nothing after it, and
 * no test of the mode: the countdown is above zero only in sample mode
 * (it starts far below zero, HS_COUNTDOWN_UNSET, and only record_sample
 * draws a new one), and the
 * filter is clean only in sample mode (hs_filter_open). The countdown moves
 * first; malloc_slow then samples (on_alloc sees it at or below zero). */
HS_EXPORT void *malloc(size_t size) {
  /* gcc's load, subtract, store and test, not one read-modify-write of the
   * countdown in asm (the eighth stop's, 4 instructions fewer a call): in
   * three sets of interleaved rounds of the 1-thread microbenchmark the
   * plain version ran faster, 4.6% by the median of per-round ratios over
   * 30 rounds (faster in 18 of them), +11.6% over the program alone
   * against +15.1%. A memory-destination subtract with the %fs override
   * costs more than its instruction count says. */
  if (HS_LIKELY((hs_until_sample -= (long)size) > 0)) return hs_real.malloc(size);
  hs_until_sample += (long)size; /* on_alloc counts it again */
  return malloc_slow(size);
}

/* A block glibc has back and the table still holds, between the two steps
 * of a single-threaded free. Only exit() in a signal handler can see it:
 * the exit report's own allocations may be handed that very block. */
static HS_TLS void *pending_forget;
void hs_hooks_exit_heap(void) {
  atomic_store(&exit_heap, 1);
  /* Sample mode's fast paths must not reach glibc either: this thread's
   * mallocs and everybody's frees take the slow paths from now on. */
  memset(hs_sampled_filter, 0, sizeof hs_sampled_filter);
  hs_until_sample = HS_COUNTDOWN_UNSET;
}
void hs_hooks_at_exit(void) {
  if (in_glibc) hs_hooks_exit_heap();
  void *p = pending_forget;
  pending_forget = NULL;
  if (p) forget(p);
  /* frees a signal handler made over a held table lock: those blocks are
   * gone for the program (nothing goes back to glibc now: the process ends) */
  if (ndeferred) finish_deferred(0);
}

static HS_COLD void free_slow(void *p) {
  if (!p || HS_UNLIKELY(is_bootstrap(p))) return;
  ENSURE_REAL();
  if (EXIT_HEAP() || is_eh(p)) {
    forget(p);
    return;
  }
  /* While the process has one thread, nothing can be handed p between
   * glibc's free and the table update (malloc in a signal handler is
   * undefined anyway), so the block leaves the table after glibc's free and
   * glibc's work overlaps the table's cache miss. With threads the block
   * must leave first (on_free). glibc's own flag: it turns false before the
   * first thread starts, however it is made (pthread_create, C11
   * thrd_create, which calls glibc's pthread_create without the PLT), and
   * never turns back. */
  if (__libc_single_threaded && !hs_sampling && atomic_load_explicit(&hs_active, memory_order_relaxed)) {
    hs_table_prefetch((uintptr_t)p);
    pending_forget = p; /* for exit() from a signal handler that lands here */
    in_glibc = 1; /* hs_real.free is void: no GLIBC() */
    hs_real.free(p);
    in_glibc = 0;
    int r = forget(p);
    if (r < 0) defer_free((uintptr_t)p | 1);
    pending_forget = NULL;
    if (HS_UNLIKELY(r == 0)) hs_bypass_unknown_free();
    return;
  }
  FINISH_DEFERRED();
  if (HS_UNLIKELY(on_free(p) < 0)) {
    defer_free((uintptr_t)p);
    return;
  }
  in_glibc = 1;
  hs_real.free(p);
  in_glibc = 0;
}

HS_EXPORT void free(void *p) {
  if (HS_LIKELY(hs_filter_clean((uintptr_t)p))) return hs_real.free(p); /* free(NULL) included */
  free_slow(p);
}

HS_EXPORT void *calloc(size_t n, size_t size) {
  ENSURE_REAL();
  if (HS_UNLIKELY(!hs_real.calloc)) {
    size_t t;
    if (__builtin_mul_overflow(n, size, &t)) return NULL;
    return bootstrap_alloc(t); /* static memory is already zero */
  }
  if (EXIT_HEAP()) {
    size_t t;
    return __builtin_mul_overflow(n, size, &t) ? NULL : eh_track(t, 16); /* pages come zeroed */
  }
  void *p = GLIBC(hs_real.calloc(n, size));
  on_alloc(p, n * size);
  return p;
}

static void *do_realloc(void *old, size_t size) {
  ENSURE_REAL();
  if (HS_UNLIKELY(is_bootstrap(old))) {
    void *p = malloc(size);
    if (p) memcpy(p, old, size); /* bootstrap blocks are small; over-read stays in the pool */
    return p;
  }
  if (!old) return malloc(size);
  if (EXIT_HEAP() || is_eh(old)) { /* realloc(p, 0) frees p and gives NULL, as glibc's */
    size_t have = eh_size(old);
    void *e = size ? eh_alloc(size, 16) : NULL;
    if (size && !e) return NULL;
    if (e) memcpy(e, old, have < size ? have : size);
    forget(old);
    on_alloc(e, size);
    return e;
  }
  uint64_t meta = 0;
  int had = 0;
  int active = atomic_load_explicit(&hs_active, memory_order_relaxed);
  if (active && (!hs_sampling || !hs_filter_clean((uintptr_t)old)))
    had = hs_table_remove((uintptr_t)old, &meta);
  if (HS_UNLIKELY(had < 0)) {
    /* A signal handler's realloc, below which this thread holds the
     * table's lock: old cannot leave the table now, nor go back to glibc. */
    if (!size) { /* glibc frees old and gives NULL */
      defer_free((uintptr_t)old);
      return NULL;
    }
    void *p = GLIBC(hs_real.malloc(size));
    if (!p) return NULL;
    size_t have = hs_real.malloc_usable_size(old);
    memcpy(p, old, have < size ? have : size);
    defer_free((uintptr_t)old);
    on_alloc(p, size);
    return p;
  }
  void *p = GLIBC(hs_real.realloc(old, size));
  if (!p && size) {
    if (had) hs_table_insert((uintptr_t)old, meta); /* old block is still live */
    return NULL;
  }
  if (had && hs_sampling)
    hs_filter_del((uintptr_t)old);
  else if (had && !is_agent_block(meta))
    account((long)hs_meta_size(meta), 1, 0);
  on_alloc(p, size);
  return p;
}

HS_EXPORT void *realloc(void *old, size_t size) { return do_realloc(old, size); }

HS_EXPORT void *reallocarray(void *old, size_t n, size_t size) {
  size_t t;
  if (__builtin_mul_overflow(n, size, &t)) {
    errno = ENOMEM;
    return NULL;
  }
  return do_realloc(old, t);
}

HS_EXPORT int posix_memalign(void **out, size_t align, size_t size) {
  ENSURE_REAL();
  if (EXIT_HEAP()) {
    if (!align || (align & (align - 1)) || align % sizeof(void *)) return EINVAL;
    void *e = eh_track(size, align);
    if (!e) return ENOMEM;
    *out = e;
    return 0;
  }
  int r = GLIBC(hs_real.posix_memalign(out, align, size));
  if (r == 0) on_alloc(*out, size);
  return r;
}

HS_EXPORT void *aligned_alloc(size_t align, size_t size) {
  ENSURE_REAL();
  if (EXIT_HEAP()) return eh_track(size, align);
  void *p = GLIBC(hs_real.aligned_alloc(align, size));
  on_alloc(p, size);
  return p;
}

HS_EXPORT void *memalign(size_t align, size_t size) {
  ENSURE_REAL();
  if (EXIT_HEAP()) return eh_track(size, align);
  void *p = GLIBC(hs_real.memalign(align, size));
  on_alloc(p, size);
  return p;
}

HS_EXPORT void *valloc(size_t size) {
  ENSURE_REAL();
  if (EXIT_HEAP()) return eh_track(size, 4096);
  void *p = GLIBC(hs_real.valloc(size));
  on_alloc(p, size);
  return p;
}

HS_EXPORT void *pvalloc(size_t size) {
  ENSURE_REAL();
  if (EXIT_HEAP()) return eh_track(size, 4096);
  void *p = GLIBC(hs_real.pvalloc(size));
  on_alloc(p, size);
  return p;
}

HS_EXPORT size_t malloc_usable_size(void *p) {
  if (!p) return 0;
  if (is_bootstrap(p)) return 0;
  ENSURE_REAL();
  if (EXIT_HEAP() || is_eh(p)) return eh_size(p);
  return hs_real.malloc_usable_size(p);
}

/* ---- C++ operator new and delete ------------------------------------
 * new is malloc plus the C++ failure protocol (new_handler, bad_alloc).
 * The success path calls the real allocator directly; only on failure do we
 * defer to libstdc++'s own operator, which knows the protocol, with the
 * agent's guard set so its internal malloc is not recorded twice. */
typedef void *(*new_fn)(size_t);
typedef void *(*new_al_fn)(size_t, size_t);

static void unguard(int *g) { hs_in_agent = *g; }

static HS_COLD void *new_slow(const char *sym, size_t size) {
  new_fn f = (new_fn)dlsym(RTLD_NEXT, sym);
  if (!f) return NULL;
  int saved __attribute__((cleanup(unguard))) = hs_in_agent;
  hs_in_agent = 1;
  return f(size);
}
static HS_COLD void *new_al_slow(const char *sym, size_t size, size_t al) {
  new_al_fn f = (new_al_fn)dlsym(RTLD_NEXT, sym);
  if (!f) return NULL;
  int saved __attribute__((cleanup(unguard))) = hs_in_agent;
  hs_in_agent = 1;
  return f(size, al);
}

static inline void *new_impl(size_t size, const char *sym, int nothrow) {
  ENSURE_REAL();
  void *p = EXIT_HEAP() ? eh_alloc(size ? size : 1, 16) : GLIBC(hs_real.malloc(size ? size : 1));
  if (HS_UNLIKELY(!p)) {
    p = nothrow ? NULL : new_slow(sym, size);
    if (!p) return NULL;
  }
  on_alloc(p, size);
  return p;
}

static inline void *new_al_impl(size_t size, size_t al, const char *sym, int nothrow) {
  ENSURE_REAL();
  void *p = EXIT_HEAP() ? eh_alloc(size ? size : 1, al) : GLIBC(hs_real.memalign(al, size ? size : 1));
  if (HS_UNLIKELY(!p)) {
    p = nothrow ? NULL : new_al_slow(sym, size, al);
    if (!p) return NULL;
  }
  on_alloc(p, size);
  return p;
}

#define NOTHROW_T const void *
HS_EXPORT void *_Znwm(size_t n) { return new_impl(n, "_Znwm", 0); }
HS_EXPORT void *_Znam(size_t n) { return new_impl(n, "_Znam", 0); }
HS_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, NOTHROW_T t) { (void)t; return new_impl(n, NULL, 1); }
HS_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, NOTHROW_T t) { (void)t; return new_impl(n, NULL, 1); }
HS_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t al) { return new_al_impl(n, al, "_ZnwmSt11align_val_t", 0); }
HS_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t al) { return new_al_impl(n, al, "_ZnamSt11align_val_t", 0); }
HS_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, NOTHROW_T t) { (void)t; return new_al_impl(n, al, NULL, 1); }
HS_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t al, NOTHROW_T t) { (void)t; return new_al_impl(n, al, NULL, 1); }

#define DEL(name, ...) HS_EXPORT void name(void *p, ##__VA_ARGS__)
DEL(_ZdlPv) { free(p); }
DEL(_ZdaPv) { free(p); }
DEL(_ZdlPvm, size_t n) { (void)n; free(p); }
DEL(_ZdaPvm, size_t n) { (void)n; free(p); }
DEL(_ZdlPvRKSt9nothrow_t, NOTHROW_T t) { (void)t; free(p); }
DEL(_ZdaPvRKSt9nothrow_t, NOTHROW_T t) { (void)t; free(p); }
DEL(_ZdlPvSt11align_val_t, size_t al) { (void)al; free(p); }
DEL(_ZdaPvSt11align_val_t, size_t al) { (void)al; free(p); }
DEL(_ZdlPvmSt11align_val_t, size_t n, size_t al) { (void)n; (void)al; free(p); }
DEL(_ZdaPvmSt11align_val_t, size_t n, size_t al) { (void)n; (void)al; free(p); }
DEL(_ZdlPvSt11align_val_tRKSt9nothrow_t, size_t al, NOTHROW_T t) { (void)al; (void)t; free(p); }
DEL(_ZdaPvSt11align_val_tRKSt9nothrow_t, size_t al, NOTHROW_T t) { (void)al; (void)t; free(p); }

/* dlclose may unmap code whose unwind rules are cached. */
HS_EXPORT int dlclose(void *handle) {
  static int (*real_dlclose)(void *);
  if (!real_dlclose) real_dlclose = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
  /* what was loaded before, to tell what this unloads (mapped: 4 KiB is
   * too much for the stack of a thread created small) */
  struct hs_modsnap *before = hs_mmap(sizeof *before);
  if (before) hs_unwind_snapshot(before);
  int r = real_dlclose(handle);
  hs_unwind_flush(before);
  if (before) hs_munmap(before, sizeof *before);
  return r;
}

/* ---- process exit through _exit/_Exit (exit() reaches the agent through
 * its exit handler in agent.c) ------------------------------------------ */
/* The caller's callee-saved registers are roots: the trampolines push them
 * and pass the stack pointer below them (hs.h). */
HS_SAVE_REGS_ENTRY(_exit, hs_exit_hook)
HS_SAVE_REGS_ENTRY(_Exit, hs_Exit_hook)
__attribute__((used, noreturn)) void hs_exit_hook(uintptr_t sp, int status) {
  ENSURE_REAL();
  hs_report_at_exit(status, sp);
  hs_real._exit(status);
}
__attribute__((used, noreturn)) void hs_Exit_hook(uintptr_t sp, int status) {
  ENSURE_REAL();
  hs_report_at_exit(status, sp);
  hs_real._Exit(status);
}
