/* The live-block table: address -> (size, stack id, flags), 16 bytes a
 * block. Sharded by address hash so threads rarely meet on a lock; each shard
 * is an open-addressing table with linear probing and backward-shift
 * deletion (no tombstones), grown by doubling into fresh mmap'd memory. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>

#include "hs.h"

#define SHARD_BITS 9 /* HS_TABLE_SHARDS */
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
_Static_assert(NSHARDS == HS_TABLE_SHARDS, "hs.h names the shard count");

/* The shard is chosen by the 1 MiB region of the address, the slot by the
 * whole address. glibc gives each thread its own arena, so threads mostly
 * work in disjoint regions and therefore on disjoint shards: a lock's cache
 * line stays with the thread that uses it. */
static inline uint64_t mix(uintptr_t a) {
  uint64_t h = (uint64_t)(a >> 4) * 0x9E3779B97F4A7C15ull;
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
 * takes the shard's lock over (hs_lock_slow) and packs the shard
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

void hs_table_insert(uintptr_t addr, uint64_t meta) {
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
  if (!s->slots[i].addr) s->count++;
  s->slots[i].addr = addr;
  s->slots[i].meta = meta;
  hs_unlock(&s->lock);
}

/* Starts the cache misses of a later insert: the caller has a stack to walk
 * meanwhile. Reads the shard unlocked; a prefetch never faults, and a stale
 * guess costs only the prefetch. */
void hs_table_prefetch(uintptr_t addr) {
  struct shard *s = shard_for(addr);
  __builtin_prefetch(s, 1);
  struct slot *slots = __atomic_load_n(&s->slots, __ATOMIC_RELAXED);
  uint32_t cap = __atomic_load_n(&s->cap, __ATOMIC_RELAXED);
  if (slots && cap) __builtin_prefetch(&slots[(uint32_t)mix(addr) & (cap - 1)], 1);
}

int hs_table_remove(uintptr_t addr, uint64_t *meta) {
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
  hs_unlock(&s->lock);
  return 1;
}

static struct slot *find(struct shard *s, uint64_t h, uintptr_t addr) {
  if (!s->cap) return NULL;
  uint32_t mask = s->cap - 1, i = (uint32_t)h & mask;
  while (s->slots[i].addr && s->slots[i].addr != addr) i = (i + 1) & mask;
  return s->slots[i].addr ? &s->slots[i] : NULL;
}

int hs_table_lookup(uintptr_t addr, uint64_t *meta) {
  uint64_t h = mix(addr);
  struct shard *s = shard_for(addr);
  hs_lock(&s->lock);
  struct slot *e = find(s, h, addr);
  if (e) *meta = e->meta;
  hs_unlock(&s->lock);
  return e != NULL;
}

int hs_table_set_flag(uintptr_t addr, uint64_t flag) {
  uint64_t h = mix(addr);
  struct shard *s = shard_for(addr);
  hs_lock(&s->lock);
  struct slot *e = find(s, h, addr);
  if (e) e->meta |= flag;
  hs_unlock(&s->lock);
  return e != NULL;
}

/* The last check needs every live block in one array. Copying 8 million
 * blocks into fresh memory costs more than the sort in a VM, where
 * first-touch pages are dear; the table's own pages are already there. Each
 * shard's live slots are packed to the front of its array (two shards at a
 * time where there are two CPUs) and those pages moved side by side into
 * one mapping (mremap: no copy). The ends of the last pages are filled with
 * HS_TABLE_FILLER, above every block; seg[] says where each shard's blocks
 * are. */
/* Runs on hs_parallel_for's helper too, so: no libc. The count is what
 * is found: an insert or a removal the exit interrupted (in a signal
 * handler) may have left it one off. */
static void pack_shard(size_t i, void *arg) {
  (void)arg;
  struct shard *s = &shards[i];
  uint32_t k = 0, most = s->count + 1; /* the room hs_table_take set aside */
  for (uint32_t j = 0; j < s->cap && k < most; j++)
    if (s->slots[j].addr) s->slots[k++] = s->slots[j];
  s->count = k;
  size_t len = ((size_t)k * sizeof(struct slot) + 4095) & ~(size_t)4095;
  for (size_t j = k; j < len / sizeof(struct slot); j++) s->slots[j] = (struct slot){HS_TABLE_FILLER, 0};
}

void *hs_table_take(size_t *n, size_t *total, size_t *bytes, struct hs_seg *seg) {
  size_t need = 0, slots = 0;
  for (unsigned i = 0; i < NSHARDS; i++) {
    struct shard *s = &shards[i];
    if (s->growing) { /* interrupted in grow(): its new array is left as it is */
      s->slots = s->prev;
      s->cap = s->prev_cap;
      s->growing = 0;
    }
    if (!s->cap) continue;
    need += ((size_t)(s->count + 1) * sizeof(struct slot) + 4095) & ~(size_t)4095;
    slots += s->cap;
  }
  if (!need) return NULL;
  char *r = hs_mmap(need);
  if (!r) return NULL;
  hs_parallel_for(NSHARDS, slots, pack_shard, NULL);
  size_t off = 0, live = 0;
  for (unsigned i = 0; i < NSHARDS; i++) {
    struct shard *s = &shards[i];
    seg[i] = (struct hs_seg){off / sizeof(struct slot), s->count};
    live += s->count;
    if (!s->cap) continue;
    size_t len = ((size_t)s->count * sizeof(struct slot) + 4095) & ~(size_t)4095;
    if (len) {
      if (hs_mmove(s->slots, (size_t)s->cap * sizeof(struct slot), len, r + off)) {
        memcpy(r + off, s->slots, len);
        hs_munmap(s->slots, (size_t)s->cap * sizeof(struct slot));
      }
      off += len;
    } else {
      hs_munmap(s->slots, (size_t)s->cap * sizeof(struct slot));
    }
    s->slots = NULL;
    s->cap = s->count = 0;
  }
  *n = live;
  *total = off / sizeof(struct slot);
  *bytes = need;
  return r;
}

void hs_table_lock_all(void) {
  for (unsigned i = 0; i < NSHARDS; i++) hs_lock(&shards[i].lock);
}
void hs_table_unlock_all(void) {
  for (unsigned i = 0; i < NSHARDS; i++) hs_fork_release(&shards[i].lock);
}

void hs_table_foreach(void (*fn)(uintptr_t, uint64_t, void *), void *arg) {
  for (unsigned i = 0; i < NSHARDS; i++)
    for (uint32_t j = 0; j < shards[i].cap; j++)
      if (shards[i].slots[j].addr) fn(shards[i].slots[j].addr, shards[i].slots[j].meta, arg);
}

size_t hs_table_count(void) {
  size_t n = 0;
  for (unsigned i = 0; i < NSHARDS; i++) n += shards[i].count;
  return n;
}

void hs_table_foreach_locked(void (*fn)(uintptr_t, uint64_t, void *), void *arg) {
  for (unsigned i = 0; i < NSHARDS; i++) {
    hs_lock(&shards[i].lock);
    for (uint32_t j = 0; j < shards[i].cap; j++)
      if (shards[i].slots[j].addr) fn(shards[i].slots[j].addr, shards[i].slots[j].meta, arg);
    hs_unlock(&shards[i].lock);
  }
}
