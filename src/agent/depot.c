/* The stack depot: every distinct call stack is stored once and named by a
 * 32-bit id (LeakSanitizer's design). Lookups are lock-free; inserts of new
 * stacks take one lock. Entries are never freed or moved, so a reader that
 * holds an id can read its frames at any time, even while the world is
 * stopped.
 *
 * The index is an open-addressing table of entry pointers, each carrying 16
 * more bits of the stack's hash in its top bits (a probe rarely touches an
 * entry that is not the one), kept at most half full and doubled under the
 * lock: a new table is filled and published; readers still in an old one
 * find what was there (a stack added since is found again under the lock),
 * and old tables are never unmapped (together less than the last one). A
 * program has thousands of stacks (cc1: 5,000 over 4.6 million captures),
 * so the index stays small enough to stay in cache; a fixed table sized for
 * millions of stacks costs a cache miss a lookup and megabytes of touched
 * pages. */
#define _GNU_SOURCE
#include <string.h>

#include "hs.h"

#define INDEX_MIN_BITS 12
#define CHUNK_BITS 16
#define NCHUNKS ((HS_MAX_STACK_ID >> CHUNK_BITS) + 1)

struct entry {
  uint32_t hash, id;
  uint32_t n;
  /* allocations made here since start, unbiased: count in 1/65536ths */
  atomic_ulong alloc_count_fp, alloc_bytes;
  uintptr_t frames[];
};

struct index {
  size_t mask;
  _Atomic uintptr_t slot[]; /* entry | (hash >> 16) << 48; 0 = empty */
};
static _Atomic(struct index *) index_now;
static size_t index_used;
static _Atomic(struct entry **) chunks[NCHUNKS];
static atomic_uint count; /* ids handed out; id 0 is "no stack" */
static hs_lock_t lock;
static atomic_int ready;

/* A polynomial in the frames, each weighted by a power of an odd constant
 * that depends on its distance from the stack's outer end: the products are
 * independent of one another, so a deep stack hashes at the multiplier's
 * throughput, not its latency (a chain of mix steps spent ~20 cycles a
 * frame waiting). The sum alone keeps low bits from low bits only; the
 * final fold brings the high half down before the last multiply. */
uint64_t hs_depot_pw[HS_MAX_FRAMES]; /* [d] = K^(d+1), set by init() */

static inline uint64_t sum_frames(const uintptr_t *f, unsigned n, unsigned st) {
  uint64_t a = 0, b = 0; /* two sums: the adds' chain is half as long */
  const uint64_t *p = &hs_depot_pw[n - 1]; /* the innermost frame is the farthest from the end */
  unsigned i = 0;
  for (; i + 2 <= n; i += 2) {
    a += f[i * st] * p[-(int)i];
    b += f[(i + 1) * st] * p[-(int)i - 1];
  }
  if (i < n) a += f[i * st] * p[-(int)i];
  return a + b;
}

static inline uint32_t hash_of_sum(uint64_t sum, unsigned n) {
  uint64_t x = sum + n * 0x9E3779B97F4A7C15ull;
  x ^= x >> 32;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return (uint32_t)x;
}

#define TAG(h) ((uintptr_t)((h) >> 16) << 48)
#define ENTRY(v) ((struct entry *)((v) & ((1ull << 48) - 1)))

static struct index *index_new(unsigned bits) {
  struct index *x = hs_mmap(sizeof *x + (sizeof x->slot[0] << bits));
  if (x) x->mask = ((size_t)1 << bits) - 1;
  return x;
}

static void index_put(struct index *x, struct entry *e) {
  size_t i = e->hash & x->mask;
  while (atomic_load_explicit(&x->slot[i], memory_order_relaxed)) i = (i + 1) & x->mask;
  atomic_store_explicit(&x->slot[i], (uintptr_t)e | TAG(e->hash), memory_order_release);
}

static inline int frames_equal(const uintptr_t *a, const uintptr_t *f, unsigned n, unsigned st) {
  if (st == 1) return !memcmp(a, f, n * sizeof *f);
  for (unsigned i = 0; i < n; i++)
    if (a[i] != f[i * st]) return 0;
  return 1;
}

static inline struct entry *index_find(struct index *x, uint32_t h, const uintptr_t *frames, unsigned n, unsigned st) {
  const uintptr_t tag = TAG(h);
  for (size_t i = h & x->mask;; i = (i + 1) & x->mask) {
    uintptr_t v = atomic_load_explicit(&x->slot[i], memory_order_acquire);
    if (!v) return NULL;
    struct entry *e = ENTRY(v);
    if ((v & ~((1ull << 48) - 1)) == tag && e->hash == h && e->n == n && frames_equal(e->frames, frames, n, st))
      return e;
  }
}

/* The entry this thread's last depot_put found or made: its line is in
 * cache, and the allocation's counts go straight into it (see
 * hs_depot_count_alloc). */
static HS_TLS struct entry *last_put;

static int init(void) {
  if (atomic_load_explicit(&ready, memory_order_acquire)) return 1;
  if (!hs_lock_unless_mine(&lock)) return 0;
  if (!atomic_load_explicit(&index_now, memory_order_relaxed)) {
    uint64_t k = 1;
    for (unsigned d = 0; d < HS_MAX_FRAMES; d++) hs_depot_pw[d] = k *= 0xff51afd7ed558ccdull;
    atomic_store_explicit(&index_now, index_new(INDEX_MIN_BITS), memory_order_release);
  }
  int ok = atomic_load_explicit(&index_now, memory_order_relaxed) != NULL;
  if (ok) atomic_store_explicit(&ready, 1, memory_order_release);
  hs_unlock(&lock);
  return ok;
}

/* Frame i is frames[i * st]: the unwinder's walks keep them in their steps. */
static inline uint32_t depot_put(const uintptr_t *frames, unsigned n, unsigned st, int known, uint64_t *sum) {
  if (!n || n > HS_MAX_FRAMES || !init()) return HS_STACK_NONE;
  if (!known) *sum = sum_frames(frames, n, st);
  uint32_t h = hash_of_sum(*sum, n);
  struct entry *e = index_find(atomic_load_explicit(&index_now, memory_order_acquire), h, frames, n, st);
  if (e) {
    last_put = e;
    return e->id;
  }

  if (HS_UNLIKELY(!hs_lock_unless_mine(&lock))) return HS_STACK_NONE; /* a signal handler's, below which this thread holds it */
  struct index *x = atomic_load_explicit(&index_now, memory_order_relaxed);
  if ((e = index_find(x, h, frames, n, st))) {
    hs_unlock(&lock);
    return e->id;
  }
  uint32_t id = atomic_load_explicit(&count, memory_order_relaxed) + 1;
  if (id > HS_MAX_STACK_ID) {
    hs_unlock(&lock);
    return HS_STACK_NONE;
  }
  if ((index_used + 1) * 2 > x->mask + 1) { /* double it: at most half full */
    unsigned bits = 0;
    while (((size_t)1 << bits) < (x->mask + 1) * 2) bits++;
    struct index *nx = index_new(bits);
    if (!nx) {
      hs_unlock(&lock);
      return HS_STACK_NONE;
    }
    for (size_t i = 0; i <= x->mask; i++) {
      uintptr_t v = atomic_load_explicit(&x->slot[i], memory_order_relaxed);
      if (v) index_put(nx, ENTRY(v));
    }
    atomic_store_explicit(&index_now, nx, memory_order_release);
    x = nx;
  }
  struct entry **chunk = atomic_load_explicit(&chunks[id >> CHUNK_BITS], memory_order_relaxed);
  if (!chunk) {
    chunk = hs_mmap(sizeof(struct entry *) << CHUNK_BITS);
    if (!chunk) {
      hs_unlock(&lock);
      return HS_STACK_NONE;
    }
    atomic_store_explicit(&chunks[id >> CHUNK_BITS], chunk, memory_order_release);
  }
  e = hs_alloc(sizeof *e + n * sizeof *frames);
  if (!e || (uintptr_t)e >> 48) { /* the index keeps hash bits above 48 (mmap gives lower addresses) */
    hs_unlock(&lock);
    return HS_STACK_NONE;
  }
  e->hash = h;
  e->id = id;
  e->n = n;
  atomic_init(&e->alloc_count_fp, 0);
  atomic_init(&e->alloc_bytes, 0);
  for (unsigned i = 0; i < n; i++) e->frames[i] = frames[i * st];
  chunk[id & ((1u << CHUNK_BITS) - 1)] = e;
  atomic_store_explicit(&count, id, memory_order_release);
  index_put(x, e); /* after the entry is whole: index_put's store releases it */
  index_used++;
  hs_unlock(&lock);
  return id;
}

uint32_t hs_depot_put(const uintptr_t *frames, unsigned n) {
  uint64_t sum;
  return depot_put(frames, n, 1, 0, &sum);
}
uint32_t hs_depot_put_sum(const uintptr_t *frames, unsigned n, unsigned st, int known, uint64_t *sum) {
  return depot_put(frames, n, st, known, sum);
}

/* Where a lookup of the stack with this sum will begin: a capture that can
 * tell its stack's sum before it has finished (it is meeting a recent walk
 * whose sum it knows) has the index line on its way meanwhile. */
void hs_depot_prefetch(uint64_t sum, unsigned n) {
  struct index *x = atomic_load_explicit(&index_now, memory_order_acquire);
  if (x) __builtin_prefetch((const void *)&x->slot[hash_of_sum(sum, n) & x->mask]);
}

static struct entry *entry_of(uint32_t id) {
  if (id == HS_STACK_NONE || id > atomic_load_explicit(&count, memory_order_acquire)) return NULL;
  struct entry **chunk = atomic_load_explicit(&chunks[id >> CHUNK_BITS], memory_order_acquire);
  return chunk ? chunk[id & ((1u << CHUNK_BITS) - 1)] : NULL;
}

const uintptr_t *hs_depot_get(uint32_t id, unsigned *n) {
  struct entry *e = entry_of(id);
  if (!e) return NULL;
  *n = e->n;
  return e->frames;
}

/* ---- allocations per stack ---------------------------------------------
 * Every recorded allocation adds to its stack's counters. Two atomic adds on
 * a shared entry cost more than the rest of the bookkeeping, so each thread
 * adds into a small cache of its own, indexed by stack id, and moves a
 * slot's sums into the entry only when another stack takes the slot. A
 * reader adds the entry and every thread's slot for that stack. Each slot
 * has a sequence number, odd while the slot changes hands: a reader that
 * saw the same even number for every slot before reading the entry and
 * after reading the slots knows no sum moved in between, so nothing was
 * counted twice or missed. */
#define TC_SLOTS 256
struct tc_slot {
  atomic_uint seq, id;
  atomic_ulong count_fp, bytes;
};
struct tcache {
  struct tcache *next;
  atomic_int in_use;
  struct tc_slot s[TC_SLOTS];
};
static _Atomic(struct tcache *) all_tc;
static HS_TLS struct tcache *my_tc;
static HS_TLS int tc_done; /* the thread is exiting: shared counters only */

/* Caches given back by ended threads. Without the count, each new thread
 * tried every cache in turn with a compare-and-swap: 8,000 live threads
 * made 32 million of them. Now only when one is free, and read first. */
static atomic_long tc_free;

static HS_COLD struct tcache *tc_take(void) {
  if (tc_done) return NULL;
  for (struct tcache *t = atomic_load_explicit(&all_tc, memory_order_acquire);
       t && atomic_load_explicit(&tc_free, memory_order_relaxed) > 0; t = t->next) {
    int z = 0;
    if (atomic_load_explicit(&t->in_use, memory_order_relaxed) == 0 && atomic_compare_exchange_strong(&t->in_use, &z, 1)) {
      atomic_fetch_sub(&tc_free, 1);
      return my_tc = t; /* sums stay: still counted */
    }
  }
  struct tcache *t = hs_mmap(sizeof *t);
  if (!t) return NULL;
  atomic_init(&t->in_use, 1);
  t->next = atomic_load(&all_tc);
  while (!atomic_compare_exchange_weak(&all_tc, &t->next, t))
    ;
  return my_tc = t;
}

void hs_depot_thread_exit(void) {
  tc_done = 1;
  if (my_tc) {
    atomic_store_explicit(&my_tc->in_use, 0, memory_order_release);
    atomic_fetch_add(&tc_free, 1);
  }
  my_tc = NULL;
}

/* In a forked child only the forking thread lives: the others' caches are
 * free, and a slot caught changing hands is settled. */
void hs_depot_after_fork_child(void) {
  for (struct tcache *t = atomic_load(&all_tc); t; t = t->next) {
    if (t == my_tc) continue;
    for (unsigned i = 0; i < TC_SLOTS; i++) {
      unsigned q = atomic_load_explicit(&t->s[i].seq, memory_order_relaxed);
      if (q & 1) atomic_store_explicit(&t->s[i].seq, q + 1, memory_order_relaxed);
    }
    if (atomic_load(&t->in_use)) {
      atomic_store(&t->in_use, 0);
      atomic_fetch_add(&tc_free, 1);
    }
  }
}

static void entry_add(struct entry *e, uint64_t count_fp, uint64_t bytes) {
  atomic_fetch_add_explicit(&e->alloc_count_fp, count_fp, memory_order_relaxed);
  atomic_fetch_add_explicit(&e->alloc_bytes, bytes, memory_order_relaxed);
}

#define ADD(field, v) \
  atomic_store_explicit(&field, atomic_load_explicit(&field, memory_order_relaxed) + (v), memory_order_relaxed)

/* A thread's first counts go to the shared entries, with atomic adds: a
 * cache of its own (8 KiB) pays only for a thread that allocates often, and
 * most threads of a program with thousands allocate a few times. */
#define TC_AFTER 64
static HS_TLS unsigned tc_wait;

void hs_depot_count_alloc(uint32_t id, uint64_t count_fp, uint64_t bytes) {
  if (id == HS_STACK_NONE) return;
  struct tcache *t = my_tc;
  if (HS_UNLIKELY(!t) && (tc_wait < TC_AFTER ? (tc_wait++, 1) : !(t = tc_take()))) {
    struct entry *e = entry_of(id);
    if (e) entry_add(e, count_fp, bytes);
    return;
  }
  struct tc_slot *sl = &t->s[id & (TC_SLOTS - 1)];
  uint32_t cur = atomic_load_explicit(&sl->id, memory_order_relaxed);
  if (HS_LIKELY(cur == id)) { /* this thread is the only writer */
    ADD(sl->count_fp, count_fp);
    ADD(sl->bytes, bytes);
    return;
  }
  /* The stack's entry was just looked up: adding there costs two atomic
   * adds on a line in cache, where taking the slot moves the slot's sums
   * into another entry (a cache miss in a program with thousands of
   * stacks). */
  struct entry *lp = last_put;
  if (lp && lp->id == id) {
    last_put = NULL;
    entry_add(lp, count_fp, bytes);
    return;
  }
  unsigned q = atomic_load_explicit(&sl->seq, memory_order_relaxed);
  atomic_store_explicit(&sl->seq, q + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  struct entry *e = cur ? entry_of(cur) : NULL;
  if (e)
    entry_add(e, atomic_load_explicit(&sl->count_fp, memory_order_relaxed),
              atomic_load_explicit(&sl->bytes, memory_order_relaxed));
  atomic_store_explicit(&sl->id, id, memory_order_relaxed);
  atomic_store_explicit(&sl->count_fp, count_fp, memory_order_relaxed);
  atomic_store_explicit(&sl->bytes, bytes, memory_order_relaxed);
  atomic_store_explicit(&sl->seq, q + 2, memory_order_release);
}

void hs_depot_alloc_stats(uint32_t id, uint64_t *count_fp, uint64_t *bytes) {
  *count_fp = *bytes = 0;
  struct entry *e = entry_of(id);
  if (!e) return;
  /* Up to 64 tries for a quiet moment; after that the sums are read as
   * they are (one slot's worth may be off while it changes hands). */
  for (int tries = 0;; tries++) {
    int moved = 0;
    unsigned spins = 0;
    for (struct tcache *t = atomic_load_explicit(&all_tc, memory_order_acquire); t; t = t->next) {
      struct tc_slot *sl = &t->s[id & (TC_SLOTS - 1)];
      while ((atomic_load_explicit(&sl->seq, memory_order_acquire) & 1) && ++spins < 1000) __builtin_ia32_pause();
    }
    /* the sequence numbers before, the entry, the slots, the numbers after
     * (with more than 64 caches, those after the 64th are read unchecked) */
    unsigned before[64], n = 0;
    for (struct tcache *t = atomic_load_explicit(&all_tc, memory_order_acquire); t && n < 64; t = t->next)
      before[n++] = atomic_load_explicit(&t->s[id & (TC_SLOTS - 1)].seq, memory_order_acquire);
    uint64_t c = atomic_load_explicit(&e->alloc_count_fp, memory_order_acquire);
    uint64_t b = atomic_load_explicit(&e->alloc_bytes, memory_order_acquire);
    unsigned i = 0;
    for (struct tcache *t = atomic_load_explicit(&all_tc, memory_order_acquire); t; t = t->next, i++) {
      struct tc_slot *sl = &t->s[id & (TC_SLOTS - 1)];
      unsigned q = i < 64 ? before[i] : atomic_load_explicit(&sl->seq, memory_order_acquire);
      if (atomic_load_explicit(&sl->id, memory_order_relaxed) == id) {
        c += atomic_load_explicit(&sl->count_fp, memory_order_relaxed);
        b += atomic_load_explicit(&sl->bytes, memory_order_relaxed);
      }
      atomic_thread_fence(memory_order_acquire);
      if ((q & 1) || atomic_load_explicit(&sl->seq, memory_order_relaxed) != q) moved = 1;
    }
    if (!moved || tries == 64) {
      *count_fp = c;
      *bytes = b;
      return;
    }
  }
}

uint32_t hs_depot_count(void) { return atomic_load_explicit(&count, memory_order_acquire); }
void hs_depot_lock(void) { hs_lock(&lock); }
void hs_depot_unlock(void) { hs_fork_release(&lock); }
int hs_fork_held_before_depot(void) { return hs_fork_held_before(&lock); }
