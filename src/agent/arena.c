/* The agent's own memory. Everything comes from mmap so that the agent never
 * re-enters malloc, and every range is registered so that the leak check
 * never treats the agent's metadata as a root. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

#include "hs.h"

#define MAX_RANGES 8192
struct range { uintptr_t start, end; };
static struct range ranges[MAX_RANGES];
static size_t nranges;
static hs_lock_t ranges_lock;

static hs_lock_t bump_lock;
static char *bump_cur, *bump_end;
#define BUMP_CHUNK (4ul << 20)

HS_TLS int hs_exit_thread;
atomic_int hs_lock_taken_over;

#define FORK_HELD 16
static HS_TLS int in_prefork;
static HS_TLS const hs_lock_t *fork_held[FORK_HELD];
static HS_TLS int nfork_held;

void hs_fork_prepare_begin(void) {
  in_prefork = 1;
  nfork_held = 0;
}
void hs_fork_prepare_end(void) { in_prefork = 0; }
int hs_fork_held_before(const hs_lock_t *l) {
  for (int i = 0; i < nfork_held; i++)
    if (fork_held[i] == l) return 1;
  return 0;
}
void hs_fork_release(hs_lock_t *l) {
  if (HS_UNLIKELY(nfork_held) && hs_fork_held_before(l)) return;
  hs_unlock(l);
}
void hs_fork_done(void) { nfork_held = 0; }

void hs_lock_slow(hs_lock_t *l) {
  uintptr_t self = hs_lock_self();
  for (unsigned spins = 0;; spins++) {
    uintptr_t z = 0, v = atomic_load_explicit(&l->v, memory_order_relaxed);
    if (v == 0 && atomic_compare_exchange_weak_explicit(&l->v, &z, self, memory_order_acquire,
                                                        memory_order_relaxed))
      return;
    /* Held by this very thread, which is in the exit report: the holder
     * is a frame below a signal handler that called exit (hs.h). */
    if (v == self && hs_exit_thread) {
      atomic_store(&hs_lock_taken_over, 1); /* the leak check tidies up after it */
      return;
    }
    /* fork() in a signal handler that interrupted this thread holding l */
    if (v == self && in_prefork) {
      if (nfork_held < FORK_HELD) fork_held[nfork_held++] = l;
      return;
    }
    if (spins < 64)
      __builtin_ia32_pause();
    else
      sched_yield();
  }
}

/* ranges_lock is held with all signals blocked: the leak check stops
 * threads with a signal and then maps memory itself, so no thread may be
 * stopped while holding this lock. mmap is a system call anyway. */
static void ranges_lock_take(sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, old);
  hs_lock(&ranges_lock);
}
static void ranges_lock_drop(const sigset_t *old) {
  hs_unlock(&ranges_lock);
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void add_range(uintptr_t s, uintptr_t e) {
  sigset_t old;
  ranges_lock_take(&old);
  if (nranges < MAX_RANGES) ranges[nranges++] = (struct range){s, e};
  ranges_lock_drop(&old);
}

static void del_range(uintptr_t s) {
  sigset_t old;
  ranges_lock_take(&old);
  for (size_t i = 0; i < nranges; i++)
    if (ranges[i].start == s) {
      ranges[i] = ranges[--nranges];
      break;
    }
  ranges_lock_drop(&old);
}

static size_t page_round(size_t n) {
  size_t pg = 4096;
  return (n + pg - 1) & ~(pg - 1);
}

static void *map(size_t size, int flags) {
  size = page_round(size);
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
  if (p == MAP_FAILED) return NULL;
  add_range((uintptr_t)p, (uintptr_t)p + size);
  return p;
}

void *hs_mmap(size_t size) { return map(size, MAP_NORESERVE); }

void hs_register_own_range(uintptr_t start, uintptr_t end) { add_range(start, end); }

void hs_munmap(void *p, size_t size) {
  if (!p) return;
  del_range((uintptr_t)p);
  munmap(p, page_round(size));
}

void *hs_alloc(size_t size) {
  size = (size + 15) & ~(size_t)15;
  if (size > BUMP_CHUNK / 4) return hs_mmap(size);
  if (!hs_lock_unless_mine(&bump_lock)) return hs_mmap(size); /* a signal handler's, below which this thread holds it */
  if (!bump_cur || (size_t)(bump_end - bump_cur) < size) {
    char *c = hs_mmap(BUMP_CHUNK);
    if (!c) {
      hs_unlock(&bump_lock);
      return NULL;
    }
    bump_cur = c;
    bump_end = c + BUMP_CHUNK;
  }
  void *r = bump_cur;
  bump_cur += size;
  hs_unlock(&bump_lock);
  return r;
}

char *hs_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = hs_alloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* The kernel merges adjacent anonymous mappings of the same flags, so one
 * line of /proc/self/maps may hold the agent's memory and the program's
 * (tests/corpus/mmap_root.c): the leak check scans the line minus our
 * ranges, never skips it whole. fn runs without the lock. */
void hs_each_not_own(uintptr_t s, uintptr_t e, void (*fn)(uintptr_t, uintptr_t)) {
  while (s < e) {
    uintptr_t os = e, oe = e; /* the own range that starts first in [s, e) */
    sigset_t old;
    ranges_lock_take(&old);
    for (size_t i = 0; i < nranges; i++) {
      if (ranges[i].end <= s || ranges[i].start >= e) continue;
      uintptr_t rs = ranges[i].start > s ? ranges[i].start : s;
      if (rs < os || (rs == os && ranges[i].end > oe)) {
        os = rs;
        oe = ranges[i].end;
      }
    }
    ranges_lock_drop(&old);
    if (os > s) fn(s, os);
    s = oe;
  }
}

/* fork() while another thread holds one of these locks would leave it held
 * forever in the child. */
void hs_arena_atfork_prepare(void) {
  hs_lock(&bump_lock);
  hs_lock(&ranges_lock);
}
void hs_arena_atfork_release(void) {
  hs_fork_release(&ranges_lock);
  hs_fork_release(&bump_lock);
}
