/* The stack depot: every distinct call stack is stored once and named by a
 * 32-bit id (LeakSanitizer's design). Lookups are lock-free; inserts of new
 * stacks take one lock. Entries are never freed or moved, so a reader that
 * holds an id can read its frames at any time, even while the world is
 * stopped. */
#define _GNU_SOURCE
#include <string.h>

#include "hs.h"

#define NBUCKETS (1u << 20)
#define CHUNK_BITS 16
#define NCHUNKS ((HS_MAX_STACK_ID >> CHUNK_BITS) + 1)

struct entry {
  _Atomic(struct entry *) next;
  uint32_t hash, id;
  uint32_t n;
  /* allocations made here since start, unbiased: count in 1/65536ths */
  atomic_ulong alloc_count_fp, alloc_bytes;
  uintptr_t frames[];
};

static _Atomic(struct entry *) *buckets;
static _Atomic(struct entry **) chunks[NCHUNKS];
static atomic_uint count; /* ids handed out; id 0 is "no stack" */
static hs_lock_t lock;
static atomic_int ready;

static uint32_t hash_frames(const uintptr_t *f, unsigned n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  for (unsigned i = 0; i < n; i++) {
    h ^= f[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return (uint32_t)(h ^ (h >> 29));
}

static int init(void) {
  if (atomic_load_explicit(&ready, memory_order_acquire)) return 1;
  hs_lock(&lock);
  if (!buckets) buckets = hs_mmap(NBUCKETS * sizeof *buckets);
  if (buckets) atomic_store_explicit(&ready, 1, memory_order_release);
  hs_unlock(&lock);
  return buckets != NULL;
}

uint32_t hs_depot_put(const uintptr_t *frames, unsigned n) {
  if (!n || !init()) return HS_STACK_NONE;
  uint32_t h = hash_frames(frames, n);
  _Atomic(struct entry *) *b = &buckets[h & (NBUCKETS - 1)];
  for (struct entry *e = atomic_load_explicit(b, memory_order_acquire); e;
       e = atomic_load_explicit(&e->next, memory_order_acquire))
    if (e->hash == h && e->n == n && !memcmp(e->frames, frames, n * sizeof *frames)) return e->id;

  hs_lock(&lock);
  struct entry *head = atomic_load_explicit(b, memory_order_relaxed);
  for (struct entry *e = head; e; e = atomic_load_explicit(&e->next, memory_order_relaxed))
    if (e->hash == h && e->n == n && !memcmp(e->frames, frames, n * sizeof *frames)) {
      hs_unlock(&lock);
      return e->id;
    }
  uint32_t id = atomic_load_explicit(&count, memory_order_relaxed) + 1;
  if (id > HS_MAX_STACK_ID) {
    hs_unlock(&lock);
    return HS_STACK_NONE;
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
  struct entry *e = hs_alloc(sizeof *e + n * sizeof *frames);
  if (!e) {
    hs_unlock(&lock);
    return HS_STACK_NONE;
  }
  e->hash = h;
  e->id = id;
  e->n = n;
  atomic_init(&e->alloc_count_fp, 0);
  atomic_init(&e->alloc_bytes, 0);
  memcpy(e->frames, frames, n * sizeof *frames);
  atomic_store_explicit(&e->next, head, memory_order_relaxed);
  chunk[id & ((1u << CHUNK_BITS) - 1)] = e;
  atomic_store_explicit(&count, id, memory_order_release);
  atomic_store_explicit(b, e, memory_order_release);
  hs_unlock(&lock);
  return id;
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

void hs_depot_count_alloc(uint32_t id, uint64_t count_fp, uint64_t bytes) {
  struct entry *e = entry_of(id);
  if (!e) return;
  atomic_fetch_add_explicit(&e->alloc_count_fp, count_fp, memory_order_relaxed);
  atomic_fetch_add_explicit(&e->alloc_bytes, bytes, memory_order_relaxed);
}

void hs_depot_alloc_stats(uint32_t id, uint64_t *count_fp, uint64_t *bytes) {
  struct entry *e = entry_of(id);
  *count_fp = e ? atomic_load_explicit(&e->alloc_count_fp, memory_order_relaxed) : 0;
  *bytes = e ? atomic_load_explicit(&e->alloc_bytes, memory_order_relaxed) : 0;
}

uint32_t hs_depot_count(void) { return atomic_load_explicit(&count, memory_order_acquire); }
void hs_depot_lock(void) { hs_lock(&lock); }
void hs_depot_unlock(void) { hs_unlock(&lock); }
