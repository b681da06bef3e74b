/* The live-block table: address -> (size, stack id, flags).
 *
 * Blocks from glibc's malloc live in a shadow map: one 8-byte word for each
 * 32 bytes of address space that holds blocks, found through two
 * directories. glibc's user pointers are 16-byte aligned and at least 32
 * bytes apart (a chunk is at least 32 bytes and its header precedes the
 * pointer), so each 32-byte unit starts at most one live block, and the
 * word says at which of its two 16-byte halves. An insert or a removal is
 * a plain load and store of the block's own word, with no lock: glibc
 * hands an address to one caller at a time, and the agent removes a block
 * before glibc's free can hand the address out again. Neighbouring blocks
 * have neighbouring words, so a program's locality in its heap is the
 * table's too; the hash table this replaced put each block in a random
 * slot of tens of megabytes, a cache miss on nearly every free of a block
 * that was not recent, and a shard lock's `lock cmpxchg` twice a block.
 * Walking the words region by region, in address order, lists the blocks
 * sorted, which the leak check needs anyway.
 *
 * Anything else goes to the overflow, the sharded hash table of before: a
 * block that is not 16-byte aligned, above 128 GiB, beyond 47-bit
 * addresses, or whose unit already holds a block at its other half (an
 * allocator other than glibc's: jemalloc's 8- and 16-byte classes). While
 * the overflow is empty nothing looks there.
 *
 * Memory: a 1 MiB region with blocks has 256 KiB of words reserved, and a
 * 4 KiB page of them is touched only where its 16 KiB of heap hold a block:
 * at most a quarter of the heap's resident size, 8 bytes for a 32-byte
 * block (the hash table: 16 bytes a slot at most 3/4 full, for any size). */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "hs.h"

/* ---- the shadow map ---------------------------------------------------- */

#define UNIT_SHIFT 5
#define REGION_SHIFT 20
#define REGION_UNITS (1u << (REGION_SHIFT - UNIT_SHIFT)) /* 32768 words, 256 KiB */
#define MID_SHIFT 35
#define MID_REGIONS (1u << (MID_SHIFT - REGION_SHIFT)) /* 32768 regions: 32 GiB */
#define TOP_SIZE (1u << (47 - MID_SHIFT))               /* 4096: 47-bit addresses */
#define PAGE_UNITS 512                                  /* words in a 4 KiB page */

/* A word: 0 is empty; else the meta's stack and ignored bits as they are,
 * then present, which half of the unit, and the size in 37 bits. */
#define W_LOW_BITS 25 /* HS_META_STACK_BITS + the ignored bit */
#define W_PRESENT (1ull << 25)
#define W_HIGH_HALF (1ull << 26)
#define W_SIZE_SHIFT 27
#define W_MAX_SIZE ((1ull << (64 - W_SIZE_SHIFT)) - 1)
_Static_assert(HS_META_STACK_BITS + 1 == W_LOW_BITS && HS_META_IGNORED == 1ull << 24, "meta layout");

struct region {
  _Atomic(uint64_t *) words;
  _Atomic uint64_t touched; /* bit k: page k of words has been written */
};
static _Atomic(struct region *) top[TOP_SIZE];

/* Words come from chunks of 64 regions' worth, one registered range each
 * (the agent's range registry has room for 8,192). */
#define CHUNK_REGIONS 64
static hs_lock_t words_lock;
static char *words_cur, *words_end;

/* The regions that have words, in the order they got them: what a walk of
 * the table visits (the directories are 512 KiB each, mostly never
 * touched; reading them whole cost a small program's exit 0.1 ms). Grown by
 * doubling under words_lock; a replaced array stays mapped for a reader
 * still in it (together less than the last one). */
struct used { struct region *r; uintptr_t base; };
static _Atomic(struct used *) used;
static atomic_size_t nused;
static size_t used_cap;

static int note_used(struct region *r, uintptr_t base) {
  size_t n = atomic_load_explicit(&nused, memory_order_relaxed);
  struct used *u = atomic_load_explicit(&used, memory_order_relaxed);
  if (n == used_cap) {
    size_t cap = used_cap ? used_cap * 2 : 256;
    struct used *nu = hs_mmap(cap * sizeof *nu);
    if (!nu) return -1;
    if (n) memcpy(nu, u, n * sizeof *nu);
    atomic_store_explicit(&used, nu, memory_order_release);
    used_cap = cap;
    u = nu;
  }
  u[n] = (struct used){r, base};
  atomic_store_explicit(&nused, n + 1, memory_order_release);
  return 0;
}

static inline int fits(uintptr_t a, size_t size) {
  return !(a & 15) && !(a >> 47) && a && size <= W_MAX_SIZE;
}
static inline uint64_t to_word(uintptr_t a, uint64_t meta) {
  return (meta & ((1ull << W_LOW_BITS) - 1)) | W_PRESENT | ((a & 16) ? W_HIGH_HALF : 0) |
         ((uint64_t)hs_meta_size(meta) << W_SIZE_SHIFT);
}
static inline uint64_t to_meta(uint64_t w) {
  return (w & ((1ull << W_LOW_BITS) - 1)) | ((w >> W_SIZE_SHIFT) << HS_META_SIZE_SHIFT);
}
static inline int word_is(uint64_t w, uintptr_t a) {
  return w && !(((w & W_HIGH_HALF) != 0) ^ ((a & 16) != 0));
}
static inline uintptr_t word_addr(uintptr_t unit_addr, uint64_t w) {
  return unit_addr | ((w & W_HIGH_HALF) ? 16 : 0);
}

static HS_COLD struct region *new_mid(uintptr_t a) {
  struct region *m = hs_mmap(sizeof(struct region) * MID_REGIONS);
  if (!m) return NULL;
  struct region *z = NULL;
  if (!atomic_compare_exchange_strong(&top[a >> MID_SHIFT], &z, m)) {
    hs_munmap(m, sizeof(struct region) * MID_REGIONS);
    m = z;
  }
  return m;
}

static HS_COLD uint64_t *new_words(struct region *r, uintptr_t base) {
  const size_t len = REGION_UNITS * sizeof(uint64_t);
  /* An insert may come from a signal handler that interrupted this very
   * thread here: it takes no words then (the block goes to the overflow). */
  if (!hs_lock_unless_mine(&words_lock)) return NULL;
  uint64_t *w = atomic_load_explicit(&r->words, memory_order_acquire);
  if (!w) {
    if (words_cur == words_end) {
      char *c = hs_mmap(len * CHUNK_REGIONS);
      if (c) {
        words_cur = c;
        words_end = c + len * CHUNK_REGIONS;
      }
    }
    if (words_cur != words_end && !note_used(r, base)) {
      w = (uint64_t *)words_cur;
      words_cur += len;
      atomic_store_explicit(&r->words, w, memory_order_release);
    }
  }
  hs_unlock(&words_lock);
  return w;
}

/* The word of a's unit; NULL when there is none (create: none could be made). */
static inline _Atomic uint64_t *word_of(uintptr_t a, int create) {
  struct region *m = atomic_load_explicit(&top[a >> MID_SHIFT], memory_order_acquire);
  if (HS_UNLIKELY(!m) && (!create || !(m = new_mid(a)))) return NULL;
  struct region *r = &m[(a >> REGION_SHIFT) & (MID_REGIONS - 1)];
  uint64_t *w = atomic_load_explicit(&r->words, memory_order_acquire);
  if (HS_UNLIKELY(!w) && (!create || !(w = new_words(r, a & ~(((uintptr_t)1 << REGION_SHIFT) - 1))))) return NULL;
  uint32_t u = (uint32_t)(a >> UNIT_SHIFT) & (REGION_UNITS - 1);
  if (create) {
    uint64_t bit = 1ull << (u / PAGE_UNITS);
    if (HS_UNLIKELY(!(atomic_load_explicit(&r->touched, memory_order_relaxed) & bit)))
      atomic_fetch_or_explicit(&r->touched, bit, memory_order_relaxed);
  }
  return (_Atomic uint64_t *)&w[u];
}

/* ---- the overflow: a sharded hash table --------------------------------
 * Sharded by the block's 1 MiB region, each shard an open-addressing table
 * with linear probing and backward-shift deletion (no tombstones), grown by
 * doubling into fresh mmap'd memory. */

#define SHARD_BITS 9
#define NSHARDS (1u << SHARD_BITS)
#define INITIAL_CAP 256

struct slot { uintptr_t addr; uint64_t meta; };
struct shard {
  hs_lock_t lock;
  uint32_t count, cap; /* cap is a power of two, or 0 */
  struct slot *slots;
  /* While grow() switches arrays: the old one, whole (see grow) */
  struct slot *prev;
  uint32_t prev_cap, growing;
} __attribute__((aligned(64))); /* one cache line each: no false sharing */
static struct shard shards[NSHARDS];
static atomic_long ov_live; /* blocks in the overflow: 0, and nothing looks there */

static inline uint64_t mix(uintptr_t a) {
  uint64_t h = (uint64_t)(a >> 3) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 31);
}
static inline struct shard *shard_for(uintptr_t a) {
  uint64_t r = (uint64_t)(a >> 20) * 0x9E3779B97F4A7C15ull;
  return &shards[r >> (64 - SHARD_BITS)];
}

#ifdef HS_UNIT_TEST
void (*hs_table_midgrow)(void); /* tests/unit: where an exit in a signal handler can land */
#endif

/* exit() in a signal handler can interrupt this, and the exit report then
 * takes the shard's lock over (hs_lock_slow) and reads the shard
 * (hs_table_take). Between the two stores of the switch it would read the
 * new array with the old capacity and lose half the shard; after the unmap,
 * fault. So the switch is marked, and while it is, the old array (whole
 * and still mapped) is the shard. The fences keep the compiler from moving
 * the stores across the mark; the report runs on this very thread. */
static int grow(struct shard *s) {
  uint32_t ncap = s->cap ? s->cap * 2 : INITIAL_CAP;
  struct slot *ns = hs_mmap((size_t)ncap * sizeof *ns);
  if (!ns) return -1;
  for (uint32_t i = 0; i < s->cap; i++) {
    if (!s->slots[i].addr) continue;
    uint32_t j = (uint32_t)mix(s->slots[i].addr) & (ncap - 1);
    while (ns[j].addr) j = (j + 1) & (ncap - 1);
    ns[j] = s->slots[i];
  }
  struct slot *old = s->slots;
  uint32_t ocap = s->cap;
  s->prev = old;
  s->prev_cap = ocap;
  atomic_signal_fence(memory_order_seq_cst);
  s->growing = 1;
  atomic_signal_fence(memory_order_seq_cst);
  s->slots = ns;
#ifdef HS_UNIT_TEST
  if (hs_table_midgrow) hs_table_midgrow();
#endif
  s->cap = ncap;
  atomic_signal_fence(memory_order_seq_cst);
  s->growing = 0;
  atomic_signal_fence(memory_order_seq_cst);
  if (old) hs_munmap(old, (size_t)ocap * sizeof *ns);
  return 0;
}

static HS_COLD void ov_insert(uintptr_t addr, uint64_t meta) {
  uint64_t h = mix(addr);
  struct shard *s = shard_for(addr);
  if (HS_UNLIKELY(!hs_lock_unless_mine(&s->lock))) return;
  if ((s->count + 1) * 4 > s->cap * 3 && grow(s)) {
    hs_unlock(&s->lock);
    static atomic_int warned;
    if (!atomic_exchange(&warned, 1)) hs_warn("out of memory for block metadata; some blocks are untracked");
    return;
  }
  uint32_t mask = s->cap - 1, i = (uint32_t)h & mask;
  while (s->slots[i].addr && s->slots[i].addr != addr) i = (i + 1) & mask;
  if (!s->slots[i].addr) {
    s->count++;
    atomic_fetch_add(&ov_live, 1);
  }
  s->slots[i].addr = addr;
  s->slots[i].meta = meta;
  hs_unlock(&s->lock);
}

static HS_COLD int ov_remove(uintptr_t addr, uint64_t *meta) {
  uint64_t h = mix(addr);
  struct shard *s = shard_for(addr);
  if (HS_UNLIKELY(!hs_lock_unless_mine(&s->lock))) return -1;
  if (!s->cap) {
    hs_unlock(&s->lock);
    return 0;
  }
  uint32_t mask = s->cap - 1, i = (uint32_t)h & mask;
  while (s->slots[i].addr && s->slots[i].addr != addr) i = (i + 1) & mask;
  if (!s->slots[i].addr) {
    hs_unlock(&s->lock);
    return 0;
  }
  *meta = s->slots[i].meta;
  /* Backward-shift deletion: move later members of the probe run into the
   * hole when their home slot is not after the hole. */
  uint32_t hole = i, j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!s->slots[j].addr) break;
    uint32_t home = (uint32_t)mix(s->slots[j].addr) & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      s->slots[hole] = s->slots[j];
      hole = j;
    }
  }
  s->slots[hole].addr = 0;
  s->slots[hole].meta = 0;
  s->count--;
  atomic_fetch_sub(&ov_live, 1);
  hs_unlock(&s->lock);
  return 1;
}

static struct slot *ov_find(struct shard *s, uintptr_t addr) {
  if (!s->cap) return NULL;
  uint32_t mask = s->cap - 1, i = (uint32_t)mix(addr) & mask;
  while (s->slots[i].addr && s->slots[i].addr != addr) i = (i + 1) & mask;
  return s->slots[i].addr ? &s->slots[i] : NULL;
}

/* The shard's live slots; with the shard locked (or the world stopped). An
 * exit in a signal handler that interrupted grow() reads the old array. */
static void ov_each(struct shard *s, void (*fn)(uintptr_t, uint64_t, void *), void *arg) {
  const struct slot *sl = s->growing ? s->prev : s->slots;
  uint32_t cap = s->growing ? s->prev_cap : s->cap;
  for (uint32_t j = 0; j < cap; j++)
    if (sl[j].addr) fn(sl[j].addr, sl[j].meta, arg);
}

/* ---- the table ---------------------------------------------------------- */

/* Set while the real allocator is glibc's (hooks.c): each unit then starts
 * at most one live block and a store needs no compare-and-swap. */
int hs_table_units_exclusive;

void hs_table_insert(uintptr_t a, uint64_t meta) {
  if (HS_LIKELY(fits(a, hs_meta_size(meta)))) {
    _Atomic uint64_t *w = word_of(a, 1);
    if (HS_LIKELY(w != NULL)) {
      uint64_t v = to_word(a, meta);
      if (HS_LIKELY(hs_table_units_exclusive)) {
        /* A word of the other half is stale: glibc never has two live
         * blocks in one unit (a free that went past the agent left it).
         * So the word is not read: a store that misses the cache waits in
         * the store buffer, a load stalls (python3: half of the insert's
         * samples were on the unused load). */
        atomic_store_explicit(w, v, memory_order_relaxed);
        return;
      }
      uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
      while (!old || word_is(old, a))
        if (atomic_compare_exchange_weak_explicit(w, &old, v, memory_order_relaxed, memory_order_relaxed)) return;
    }
  }
  ov_insert(a, meta);
}

/* Starts the cache miss of a later insert or removal: the caller has a
 * stack to walk or glibc's free to run meanwhile. */
void hs_table_prefetch(uintptr_t a) {
  struct region *m = atomic_load_explicit(&top[(a >> MID_SHIFT) & (TOP_SIZE - 1)], memory_order_relaxed);
  if (!m) return;
  uint64_t *w = atomic_load_explicit(&m[(a >> REGION_SHIFT) & (MID_REGIONS - 1)].words, memory_order_relaxed);
  if (w) __builtin_prefetch(&w[(a >> UNIT_SHIFT) & (REGION_UNITS - 1)], 1);
}

int hs_table_remove(uintptr_t a, uint64_t *meta) {
  if (HS_LIKELY(!(a & 15) && !(a >> 47))) {
    _Atomic uint64_t *w = word_of(a, 0);
    if (HS_LIKELY(w != NULL)) {
      uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
      if (HS_LIKELY(word_is(v, a))) {
        if (HS_LIKELY(hs_table_units_exclusive))
          atomic_store_explicit(w, 0, memory_order_relaxed);
        else if (!atomic_compare_exchange_strong_explicit(w, &v, 0, memory_order_relaxed, memory_order_relaxed))
          goto overflow; /* only a double free races a removal */
        *meta = to_meta(v);
        return 1;
      }
    }
  }
overflow:
  if (HS_UNLIKELY(atomic_load_explicit(&ov_live, memory_order_relaxed))) return ov_remove(a, meta);
  return 0;
}

int hs_table_lookup(uintptr_t a, uint64_t *meta) {
  if (!(a & 15) && !(a >> 47)) {
    _Atomic uint64_t *w = word_of(a, 0);
    uint64_t v = w ? atomic_load_explicit(w, memory_order_relaxed) : 0;
    if (word_is(v, a)) {
      *meta = to_meta(v);
      return 1;
    }
  }
  struct shard *s = shard_for(a);
  hs_lock(&s->lock);
  struct slot *e = ov_find(s, a);
  if (e) *meta = e->meta;
  hs_unlock(&s->lock);
  return e != NULL;
}

int hs_table_set_flag(uintptr_t a, uint64_t flag) {
  if (!(a & 15) && !(a >> 47)) {
    _Atomic uint64_t *w = word_of(a, 0);
    uint64_t v = w ? atomic_load_explicit(w, memory_order_relaxed) : 0;
    while (word_is(v, a))
      if (atomic_compare_exchange_weak_explicit(w, &v, v | (flag & ((1ull << W_LOW_BITS) - 1)), memory_order_relaxed,
                                                memory_order_relaxed))
        return 1;
  }
  struct shard *s = shard_for(a);
  hs_lock(&s->lock);
  struct slot *e = ov_find(s, a);
  if (e) e->meta |= flag;
  hs_unlock(&s->lock);
  return e != NULL;
}

/* Calls fn for every block of the shadow map. */
static void shadow_each(void (*fn)(uintptr_t, uint64_t, void *), void *arg) {
  size_t n = atomic_load_explicit(&nused, memory_order_acquire);
  const struct used *list = atomic_load_explicit(&used, memory_order_acquire);
  for (size_t k = 0; k < n; k++) {
    struct region *r = list[k].r;
    const uint64_t *w = atomic_load_explicit(&r->words, memory_order_acquire);
    for (uint64_t pages = atomic_load_explicit(&r->touched, memory_order_relaxed); pages; pages &= pages - 1) {
      uint32_t u0 = (uint32_t)__builtin_ctzll(pages) * PAGE_UNITS;
      for (uint32_t u = u0; u < u0 + PAGE_UNITS; u++) {
        uint64_t v = atomic_load_explicit((_Atomic uint64_t *)&w[u], memory_order_relaxed);
        if (v) fn(word_addr(list[k].base | (uintptr_t)u << UNIT_SHIFT, v), to_meta(v), arg);
      }
    }
  }
}

static void ov_all(void (*fn)(uintptr_t, uint64_t, void *), void *arg) {
  for (unsigned i = 0; i < NSHARDS; i++) ov_each(&shards[i], fn, arg);
}

static void count_one(uintptr_t a, uint64_t meta, void *arg) {
  (void)a, (void)meta;
  ++*(size_t *)arg;
}

/* The last check's list. The regions with words are listed first; their
 * blocks are counted and then copied, each region into its own part of the
 * array, two CPUs sharing the regions (hs_parallel_for: the helper runs no
 * libc code, so the words are given back afterwards, on this thread). */
struct rg { const uint64_t *w; uint64_t touched; uintptr_t base; size_t start, count; };
struct take { struct rg *rg; struct slot *b; };

/* The regions with blocks, by address (out: NULL counts them). */
static size_t each_region(struct rg *out) {
  size_t n = atomic_load_explicit(&nused, memory_order_acquire), k = 0;
  const struct used *list = atomic_load_explicit(&used, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    struct region *r = list[i].r;
    uint64_t touched = atomic_load_explicit(&r->touched, memory_order_relaxed);
    if (!touched) continue;
    if (out) out[k] = (struct rg){atomic_load_explicit(&r->words, memory_order_acquire), touched, list[i].base, 0, 0};
    k++;
  }
  if (out) /* Shell sort (Ciura's gaps): no libc on this path, and a few thousand regions */
    for (int g = 7; g >= 0; g--) {
      static const size_t gaps[] = {1, 4, 10, 23, 57, 132, 301, 701};
      for (size_t i = gaps[g]; i < k; i++) {
        struct rg x = out[i];
        size_t j = i;
        for (; j >= gaps[g] && out[j - gaps[g]].base > x.base; j -= gaps[g]) out[j] = out[j - gaps[g]];
        out[j] = x;
      }
    }
  return k;
}

static void count_region(size_t k, void *arg) {
  struct rg *r = &((struct take *)arg)->rg[k];
  size_t c = 0;
  for (uint64_t pages = r->touched; pages; pages &= pages - 1)
    for (uint32_t u = (uint32_t)__builtin_ctzll(pages) * PAGE_UNITS, e = u + PAGE_UNITS; u < e; u++) c += r->w[u] != 0;
  r->count = c;
}

static void fill_region(size_t k, void *arg) {
  const struct rg *r = &((struct take *)arg)->rg[k];
  struct slot *o = ((struct take *)arg)->b + r->start, *end = o + r->count;
  for (uint64_t pages = r->touched; pages; pages &= pages - 1)
    for (uint32_t u = (uint32_t)__builtin_ctzll(pages) * PAGE_UNITS, e = u + PAGE_UNITS; u < e; u++) {
      uint64_t v = r->w[u];
      if (v && o < end) *o++ = (struct slot){word_addr(r->base | (uintptr_t)u << UNIT_SHIFT, v), to_meta(v)};
    }
}

struct fill { struct slot *b; size_t n, cap; };
static void fill_one(uintptr_t a, uint64_t meta, void *arg) {
  struct fill *f = arg;
  if (f->n < f->cap) f->b[f->n++] = (struct slot){a, meta};
}

void *hs_table_take(int release, size_t *n, size_t *bytes, int *sorted) {
  size_t nrg = each_region(NULL), ov = 0, sh = 0;
  struct take tk = {nrg ? hs_mmap(nrg * sizeof *tk.rg) : NULL, NULL};
  *n = 0;
  if (nrg && !tk.rg) return NULL;
  each_region(tk.rg);
  hs_parallel_for(nrg, nrg * 64, count_region, &tk);
  for (size_t k = 0; k < nrg; k++) {
    tk.rg[k].start = sh;
    sh += tk.rg[k].count;
  }
  ov_all(count_one, &ov);
  *bytes = (sh + ov + 1) * sizeof(struct slot);
  *sorted = !ov;
  tk.b = hs_mmap(*bytes);
  if (!tk.b) {
    hs_munmap(tk.rg, nrg * sizeof *tk.rg);
    return NULL;
  }
  hs_parallel_for(nrg, sh, fill_region, &tk);
  struct fill f = {tk.b + sh, 0, ov};
  ov_all(fill_one, &f);
  if (release) {
    size_t nu = atomic_load_explicit(&nused, memory_order_acquire);
    const struct used *list = atomic_load_explicit(&used, memory_order_acquire);
    for (size_t k = 0; k < nu; k++)
      if (atomic_load_explicit(&list[k].r->touched, memory_order_relaxed)) {
        madvise(atomic_load_explicit(&list[k].r->words, memory_order_relaxed), REGION_UNITS * sizeof(uint64_t),
                MADV_DONTNEED);
        atomic_store(&list[k].r->touched, 0);
      }
    for (unsigned i = 0; i < NSHARDS; i++) {
      struct shard *s = &shards[i];
      if (s->growing) { /* interrupted in grow(): its new array is left as it is */
        s->slots = s->prev;
        s->cap = s->prev_cap;
        s->growing = 0;
      }
      if (s->slots) hs_munmap(s->slots, (size_t)s->cap * sizeof(struct slot));
      s->slots = NULL;
      s->cap = s->count = 0;
    }
    atomic_store(&ov_live, 0);
  }
  hs_munmap(tk.rg, nrg * sizeof *tk.rg);
  *n = sh + f.n;
  return tk.b;
}

/* The overflow's locks, and the one that hands out words: fork() and the
 * leak check take them all, so that no thread is stopped in the middle of
 * an overflow update. */
void hs_table_lock_all(void) {
  hs_lock(&words_lock);
  for (unsigned i = 0; i < NSHARDS; i++) hs_lock(&shards[i].lock);
}
void hs_table_unlock_all(void) {
  for (unsigned i = 0; i < NSHARDS; i++) hs_fork_release(&shards[i].lock);
  hs_fork_release(&words_lock);
}

size_t hs_table_count(void) {
  size_t n = 0;
  shadow_each(count_one, &n);
  ov_all(count_one, &n);
  return n;
}

/* Every live block while the world runs: the words are read as they are
 * (each is whole: one aligned store), each overflow shard under its lock. */
void hs_table_foreach_locked(void (*fn)(uintptr_t, uint64_t, void *), void *arg) {
  shadow_each(fn, arg);
  for (unsigned i = 0; i < NSHARDS; i++) {
    hs_lock(&shards[i].lock);
    ov_each(&shards[i], fn, arg);
    hs_unlock(&shards[i].lock);
  }
}
