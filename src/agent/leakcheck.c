/* The leak check, in LeakSanitizer's order: lock the block table, stop the
 * world, collect roots, flood fill, gather cliques of lost blocks, group by
 * stack, resume. The classification follows valgrind memcheck exactly (see
 * doc/leak-check.md):
 *   - a word in a root equal to a block's start (or matching one of
 *     memcheck's default heuristics for interior pointers) makes the block
 *     Reachable; any other pointer into it makes it Possible;
 *   - blocks found while scanning a Possible block are Possible at best;
 *   - every still-Unreached block, in address order, leads a clique: the
 *     Unreached blocks it reaches (by any pointer) become IndirectLeak and
 *     their bytes are added to the leader, which is definitely lost.
 * Nothing here calls malloc: other threads are stopped and may hold the
 * allocator's locks. Working memory comes from hs_mmap. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hs.h"

int hs_checking;

enum { UNREACHED = 0, POSSIBLE, REACHABLE, INDIRECT };
#define F_PENDING 4 /* in st[], above the two bits of state */

/* A block as the table holds it, 16 bytes: the check's arrays are as small
 * as they can be, because fresh memory is what the check mostly pays for. */
struct blk {
  uintptr_t addr;
  uint64_t meta; /* size, stack id, ignored: see hs_meta */
};
#define BSIZE(b) hs_meta_size((b)->meta)
#define BSTACK(b) hs_meta_stack((b)->meta)
#define BIGNORED(b) (((b)->meta & HS_META_IGNORED) != 0)
#define STATE(i) (C.st[i] & 3)
#define SET_STATE(i, s) (C.st[i] = (uint8_t)((C.st[i] & ~3) | (s)))

struct root {
  uintptr_t where;
  uint8_t kind; /* enum hs_root_kind */
  pid_t tid;
};

struct map {
  uintptr_t start, end;
  unsigned r : 1, w : 1, x : 1, file : 1, special : 1, device : 1, heap : 1;
};

static struct {
  struct blk *b;
  uint8_t *st; /* per block: state (2 bits), F_PENDING */
  size_t n;
  size_t taken_bytes;         /* the mapping of b (hs_table_take) */
  uintptr_t lo, hi;           /* [lowest block start, highest block end) */
  struct region *reg;         /* the region index, by address */
  uint32_t *reg_hash;         /* region number -> index + 1 */
  uint32_t *reg_pages;
  size_t nreg, reg_mask, npg;
  uint32_t *stack;            /* mark stack */
  size_t sp;
  uint64_t *ind_bytes, *ind_blocks; /* per clique leader */
  uint64_t *max_off;          /* largest interior offset that reached a Possible block */
  uint32_t *root_of;          /* per block: 1 + index into roots, 0 = none */
  struct root *roots;
  size_t nroots, caproots;
  long parent;                /* block being scanned, or -1 for a root */
  uint8_t cur_kind;           /* kind of the root range being scanned */
  pid_t cur_tid;
  uintptr_t arena_lo, arena_hi; /* glibc's main_arena, never a root */
  struct map *maps;
  size_t nmaps;
  /* The text of /proc/self/maps, kept mapped until the check ends: its own
   * mapping is one of the lines, and once unmapped (and no longer the
   * agent's) the scan would fault on every page of it. */
  char *maps_text;
  size_t maps_text_cap;
  uint64_t scanned;
} C;

/* In-place MSD radix sort (American flag sort) on the address relative to
 * the lowest one, 8 bits a digit from the top: no second array. */
static void flag_sort(struct blk *a, size_t n, uintptr_t lo, int shift) {
  if (n < 32 || shift < 0) {
    for (size_t i = 1; i < n; i++) {
      struct blk x = a[i];
      size_t j = i;
      for (; j > 0 && a[j - 1].addr > x.addr; j--) a[j] = a[j - 1];
      a[j] = x;
    }
    return;
  }
  size_t count[256] = {0}, start[256], next[256];
  for (size_t i = 0; i < n; i++) count[((a[i].addr - lo) >> shift) & 255]++;
  size_t sum = 0;
  for (int d = 0; d < 256; d++) {
    start[d] = next[d] = sum;
    sum += count[d];
  }
  for (int d = 0; d < 256; d++) {
    size_t end = start[d] + count[d];
    while (next[d] < end) {
      struct blk x = a[next[d]];
      int k = (int)(((x.addr - lo) >> shift) & 255);
      while (k != d) { /* cycle the element to its bucket */
        struct blk y = a[next[k]];
        a[next[k]++] = x;
        x = y;
        k = (int)(((x.addr - lo) >> shift) & 255);
      }
      a[next[d]++] = x;
    }
  }
  for (int d = 0; d < 256; d++)
    if (count[d] > 1) flag_sort(a + start[d], count[d], lo, shift - 8);
}

static void sort_range(struct blk *a, size_t n) {
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (size_t i = 0; i < n; i++) {
    if (a[i].addr < lo) lo = a[i].addr;
    if (a[i].addr > hi) hi = a[i].addr;
  }
  uint64_t span = (uint64_t)(hi - lo);
  int bits = span ? 64 - __builtin_clzll(span) : 1;
  int top = bits > 8 ? ((bits - 8 + 7) / 8) * 8 : 0; /* shift of the most significant digit */
  flag_sort(a, n, lo, top);
}

/* The region index: for every 1 MiB region holding block starts, where its
 * blocks are in the sorted array and, for regions with many, the first
 * block at or after each of its 256 pages. Built in one pass over the
 * sorted blocks; a lookup is a probe in a small hash (a few KiB per
 * thousand regions: it stays in cache) and a short binary search. */
struct region {
  uint64_t num;      /* address >> 20 */
  uint32_t start, end; /* its blocks: [start, end) */
  uint32_t *pg;      /* pg[p] = first block at or after page p; pg[256] = end. NULL: few blocks */
};
#define PG_MIN 32 /* blocks in a region before it gets a page table */

static inline size_t reg_hash(uint64_t num) { return (size_t)((num * 0x9E3779B97F4A7C15ull) >> 32); }

/* In sorted a[0, n), the end of the run of blocks in a[i]'s 1 MiB region:
 * galloping, then binary search (regions hold thousands of blocks). */
static size_t region_end(const struct blk *a, size_t i, size_t n) {
  const uintptr_t lim = ((a[i].addr >> 20) + 1) << 20;
  size_t in = i, step = 1, lo, hi; /* a[in] is in the region */
  while (in + step < n && a[in + step].addr < lim) {
    in += step;
    step *= 2;
  }
  lo = in + 1;
  hi = in + step < n ? in + step : n; /* a[hi] is not, or hi == n */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid].addr < lim)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static int build_region_index(void) {
  size_t nreg = 0, npg = 0;
  for (size_t i = 0, j; i < C.n; i = j) {
    j = region_end(C.b, i, C.n);
    nreg++;
    npg += j - i >= PG_MIN;
  }
  size_t cap = 64;
  while (cap < nreg * 2) cap <<= 1;
  C.reg = hs_mmap(nreg * sizeof *C.reg);
  C.reg_hash = hs_mmap(cap * sizeof *C.reg_hash);
  C.reg_pages = hs_mmap(npg * 257 * sizeof *C.reg_pages);
  if (!C.reg || !C.reg_hash || (npg && !C.reg_pages)) return -1;
  C.nreg = nreg;
  C.reg_mask = cap - 1;
  C.npg = npg;
  size_t r = 0, pgk = 0;
  for (size_t i = 0, j; i < C.n; i = j) {
    uint64_t num = C.b[i].addr >> 20;
    j = region_end(C.b, i, C.n);
    struct region *g = &C.reg[r];
    *g = (struct region){num, (uint32_t)i, (uint32_t)j, NULL};
    if (j - i >= PG_MIN) {
      g->pg = &C.reg_pages[257 * pgk++];
      size_t k = i;
      for (unsigned p = 0; p < 256; p++) {
        uintptr_t base = (uintptr_t)((num << 20) | ((uint64_t)p << 12));
        while (k < j && C.b[k].addr < base) k++;
        g->pg[p] = (uint32_t)k;
      }
      g->pg[256] = (uint32_t)j;
    }
    size_t h = reg_hash(num) & C.reg_mask;
    while (C.reg_hash[h]) h = (h + 1) & C.reg_mask;
    C.reg_hash[h] = (uint32_t)++r; /* region index + 1 */
  }
  return 0;
}

/* Index of the last block starting at or before v within [lo, hi). */
static long last_le(uintptr_t v, long lo, long hi) {
  while (lo < hi) {
    long mid = lo + (hi - lo) / 2;
    if (C.b[mid].addr <= v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

/* The last region whose number is at most num, or -1. */
static long region_le(uint64_t num) {
  size_t h = reg_hash(num) & C.reg_mask;
  for (uint32_t k; (k = C.reg_hash[h]) != 0; h = (h + 1) & C.reg_mask)
    if (C.reg[k - 1].num == num) return (long)k - 1;
  long lo = 0, hi = (long)C.nreg;
  while (lo < hi) {
    long mid = lo + (hi - lo) / 2;
    if (C.reg[mid].num <= num)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

/* Index of the last block starting at or before v, or -1. */
static inline long block_le(uintptr_t v) {
  long r = region_le(v >> 20);
  if (r < 0) return -1;
  const struct region *g = &C.reg[r];
  if (g->num != v >> 20) return (long)g->end - 1; /* v is past every block of g */
  if (!g->pg) return last_le(v, g->start, g->end); /* start - 1 when v precedes them all */
  unsigned p = (unsigned)(v >> 12) & 255;
  return last_le(v, g->pg[p], g->pg[p + 1]);
}

/* The block that v points into (or at, for a zero-sized block), or -1. */
static inline long find_block(uintptr_t v) {
  if (v < C.lo || v >= C.hi) return -1;
  long cand = block_le(v);
  if (cand < 0) return -1;
  const struct blk *b = &C.b[cand];
  size_t size = BSIZE(b);
  if (v - b->addr < size || (size == 0 && v == b->addr)) return cand;
  return -1;
}

/* ---- memory map ------------------------------------------------------- */

static int read_maps(void) {
  int fd = hs_open_path("/proc/thread-self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    /* /proc not mounted, or gone from a new root the agent did not see */
    hs_warn("cannot read /proc/thread-self/maps (%s): the leak check needs the memory map", strerror(errno));
    return -1;
  }
  size_t cap = 1 << 20, len = 0;
  char *buf = hs_mmap(cap);
  if (!buf) {
    close(fd);
    return -1;
  }
  for (;;) {
    if (len + 4096 > cap) {
      char *nb = hs_mmap(cap * 2);
      if (!nb) break;
      memcpy(nb, buf, len);
      hs_munmap(buf, cap);
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
  C.maps = hs_mmap((lines + 1) * sizeof *C.maps);
  if (!C.maps) {
    hs_munmap(buf, cap);
    return -1;
  }
  C.nmaps = 0;
  for (char *p = buf; *p;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = 0;
    struct map m = {0};
    char *q = p;
    m.start = 0;
    while (*q && *q != '-') m.start = m.start * 16 + (uintptr_t)(*q <= '9' ? *q - '0' : (*q | 32) - 'a' + 10), q++;
    if (*q) q++;
    while (*q && *q != ' ') m.end = m.end * 16 + (uintptr_t)(*q <= '9' ? *q - '0' : (*q | 32) - 'a' + 10), q++;
    if (*q) q++;
    m.r = q[0] == 'r';
    m.w = q[1] == 'w';
    m.x = q[2] == 'x';
    /* skip perms, offset, dev, inode to the path */
    for (int f = 0; f < 4 && *q; f++) {
      while (*q && *q != ' ') q++;
      while (*q == ' ') q++;
    }
    if (*q == '/') {
      m.file = 1;
      if (!strncmp(q, "/dev/", 5) && strncmp(q, "/dev/zero", 9)) m.device = 1;
    } else if (*q == '[') {
      if (!strncmp(q, "[heap]", 6)) m.heap = 1;
      else if (strncmp(q, "[stack", 6) && strncmp(q, "[anon", 5)) m.special = 1; /* vdso, vvar, vsyscall */
    }
    C.maps[C.nmaps++] = m;
    if (!nl) break;
    p = nl + 1;
  }
  C.maps_text = buf;
  C.maps_text_cap = cap;
  return 0;
}

static const struct map *map_of(uintptr_t a) {
  size_t lo = 0, hi = C.nmaps;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (C.maps[mid].end <= a)
      lo = mid + 1;
    else if (C.maps[mid].start > a)
      hi = mid;
    else
      return &C.maps[mid];
  }
  return NULL;
}

/* ---- memcheck's interior-pointer heuristics (all on by default) ------- */

static int is_vtable(uintptr_t p) {
  const struct map *m = map_of(p);
  if (!m || !m->file || !m->r) return 0;
  uintptr_t max = p + 20 * sizeof(uintptr_t);
  if (max > m->end - sizeof(uintptr_t)) max = m->end - sizeof(uintptr_t);
  int fns = 0;
  for (uintptr_t s = p; s <= max; s += sizeof(uintptr_t)) {
    uintptr_t f = *(const uintptr_t *)s;
    if (!f) continue;
    const struct map *fm = map_of(f);
    if (!fm || !fm->file || !fm->x) return 0;
    if (++fns == 2) return 1;
  }
  return 0;
}

static int heuristic(uintptr_t ptr, const struct blk *b) {
  const uintptr_t *w = (const uintptr_t *)b->addr;
  const uint64_t size = BSIZE(b);
  uint64_t off = ptr - b->addr;
  /* std::string (pre-C++11 ABI): length, capacity, refcount, chars. */
  if (off == 24 && size >= 16) {
    uint64_t capacity = w[1];
    if (24 + capacity + 1 == size && w[0] <= capacity) return 1;
  }
  /* length64: a 64-bit length of the rest, then the data (sqlite). */
  if (off == 8 && size >= 8 && w[0] > 0 && size - 8 == w[0]) return 1;
  /* new[] of objects with destructors: element count, then the array. */
  if (off == 8 && size >= 8 && w[0] > 0 && (size - 8) % w[0] == 0) return 1;
  /* multiple inheritance: a vtable pointer at ptr and at the block start. */
  if (!(ptr & 7) && off + 8 <= size && size >= 8) {
    uintptr_t inner = *(const uintptr_t *)ptr, first = w[0];
    if (!(inner & 7) && inner >= 4096 && !(first & 7) && first >= 4096 && is_vtable(inner) &&
        is_vtable(first))
      return 1;
  }
  return 0;
}

/* ---- marking ------------------------------------------------------------ */

static inline void push(long i) {
  if (C.st[i] & F_PENDING) return;
  C.st[i] |= F_PENDING;
  C.stack[C.sp++] = (uint32_t)i;
}

/* Remembers what keeps block i alive: the root word itself, or whatever
 * keeps the block that points to it. */
static void retain(long i, uintptr_t where) {
  if (C.parent >= 0) {
    C.root_of[i] = C.root_of[C.parent];
  } else if (C.nroots < C.caproots) {
    C.roots[C.nroots] = (struct root){where, C.cur_kind, C.cur_tid};
    C.root_of[i] = (uint32_t)++C.nroots;
  }
}

/* A pointer found in a root (prior_definite) or in a block, at where. */
static void mark_ptr(uintptr_t v, int prior_definite, uintptr_t where) {
  long i = find_block(v);
  if (i < 0) return;
  struct blk *b = &C.b[i];
  if (STATE(i) == REACHABLE) return;
  int start = v == b->addr || heuristic(v, b);
  if (start && prior_definite) {
    SET_STATE(i, REACHABLE);
    retain(i, where);
    push(i);
  } else if (STATE(i) == UNREACHED) {
    SET_STATE(i, POSSIBLE);
    retain(i, where);
    if (C.max_off && v - b->addr > C.max_off[i]) C.max_off[i] = v - b->addr;
    push(i);
  } else if (C.max_off && v - b->addr > C.max_off[i] && !start) {
    C.max_off[i] = v - b->addr;
  }
}

static void clique_ptr(uintptr_t v, long leader) {
  long i = find_block(v);
  if (i < 0 || i == leader || STATE(i) != UNREACHED) return;
  push(i);
  C.ind_bytes[leader] += BSIZE(&C.b[i]) + C.ind_bytes[i];
  C.ind_blocks[leader] += 1 + C.ind_blocks[i];
  C.ind_bytes[i] = C.ind_blocks[i] = 0;
  SET_STATE(i, INDIRECT);
}

static sigjmp_buf fault_jmp;
static volatile uintptr_t fault_addr;
static volatile sig_atomic_t in_scan; /* the checking thread reads roots in scan_range */
static pid_t checker_tid;
static struct sigaction old_segv, old_bus;

static void on_fault(int sig, siginfo_t *si, void *uc) {
  if (in_scan && gettid() == checker_tid) {
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(fault_jmp, 1);
  }
  /* Not the scan's fault: a thread that did not stop (it blocks the stop
   * signal) and whose program resolves its own faults, as a GC's write
   * barrier or a JIT's guard page does. The program's disposition decides,
   * as it would without the check. (It used to jump into the checking
   * thread's frame from the faulting thread's stack: the process crashed.) */
  /* Without a handler of the program's, the default action: the
   * instruction faults again and the kernel ends the process, as it would
   * have. */
  if (!hs_forward_signal(sig == SIGBUS ? &old_bus : &old_segv, sig, si, uc)) signal(sig, SIG_DFL);
}

static inline void scan_words(uintptr_t p, uintptr_t end, int prior_definite, long leader) {
  for (; p < end; p += 8) {
    uintptr_t v = *(const uintptr_t *)p;
    if (v - C.lo >= C.hi - C.lo) continue;
    if (leader < 0)
      mark_ptr(v, prior_definite, p);
    else
      clique_ptr(v, leader);
  }
}

/* Scans a root range word by word. Faults (a file mapping past its end, a
 * page unmapped meanwhile) skip the page. The handler runs with SA_NODEFER,
 * so the jump needs no signal mask restored (and sigsetjmp makes no system
 * call). */
static void scan_range(uintptr_t start, uintptr_t end, int prior_definite, long leader) {
  volatile uintptr_t p = (start + 7) & ~(uintptr_t)7;
  end &= ~(uintptr_t)7;
  in_scan = 1;
  if (sigsetjmp(fault_jmp, 0)) p = (fault_addr & ~(uintptr_t)4095) + 4096;
  if (p < end) {
    C.scanned += end - p;
    scan_words(p, end, prior_definite, leader);
  }
  in_scan = 0;
}

static void drain(long leader) {
  while (C.sp) {
    long i = C.stack[--C.sp];
    C.st[i] &= (uint8_t)~F_PENDING;
    C.parent = i;
    /* A live block is mapped memory: no fault handling needed. */
    uintptr_t s = (C.b[i].addr + 7) & ~(uintptr_t)7, e = (C.b[i].addr + BSIZE(&C.b[i])) & ~(uintptr_t)7;
    C.scanned += e > s ? e - s : 0;
    scan_words(s, e, STATE(i) != POSSIBLE, leader);
  }
  C.parent = -1;
}

/* ---- roots -------------------------------------------------------------- */

/* glibc's main_arena (a static in libc, not exported) holds the heads of
 * the free lists: pointers to free chunks, 16 bytes before their user
 * memory, which land inside the neighbouring live block. Find it by its
 * signature: an empty bin's two links point at the bin itself minus 16,
 * and most of its 127 bins are empty. */
static void find_main_arena(void) {
  uintptr_t first = 0, last = 0;
  unsigned pairs = 0;
  for (uintptr_t w = (hs_libc_data_lo + 7) & ~(uintptr_t)7; w + 16 <= hs_libc_data_hi; w += 8) {
    const uintptr_t *p = (const uintptr_t *)w;
    if (p[0] == w - 16 && p[1] == w - 16) {
      if (!first) first = w;
      last = w;
      pairs++;
      w += 8;
    }
  }
  if (pairs >= 32) {
    /* fastbins, top and last_remainder precede the bins; next etc. follow */
    C.arena_lo = first - 160;
    C.arena_hi = last + 16 + 64;
  }
}

/* Scans [s, e) as a root, leaving out the memory of live blocks (scanned
 * when reached, not as roots) and glibc's non-main arena heaps (free chunks
 * hold stale pointers). The kernel merges adjacent anonymous mappings, so a
 * single line of /proc/self/maps may hold both program data (Python's
 * obmalloc arenas, say) and mmap'd malloc chunks: exclusion is by range,
 * never by whole mapping. */
static void scan_root(uintptr_t s, uintptr_t e) {
  if (s >= e) return;
  if (C.arena_hi && C.arena_lo < e && C.arena_hi > s) {
    scan_root(s, C.arena_lo);
    scan_root(C.arena_hi, e);
    return;
  }
  for (unsigned h = 0; h < HS_MAX_ARENA_HEAPS; h++) {
    uintptr_t b = atomic_load_explicit(&hs_arena_heaps[h], memory_order_relaxed);
    if (!b) break;
    if (b < e && b + HS_ARENA_HEAP_SIZE > s) {
      if (s < b) scan_root(s, b);
      if (b + HS_ARENA_HEAP_SIZE < e) scan_root(b + HS_ARENA_HEAP_SIZE, e);
      return;
    }
  }
  long i = C.n ? block_le(s) : -1;
  if (i >= 0 && C.b[i].addr + BSIZE(&C.b[i]) > s) s = C.b[i].addr + BSIZE(&C.b[i]);
  for (i++; i < (long)C.n && C.b[i].addr < e; i++) {
    if (C.b[i].addr > s) scan_range(s, C.b[i].addr, 1, -1);
    uintptr_t be = C.b[i].addr + BSIZE(&C.b[i]);
    if (be > s) s = be;
  }
  if (s < e) scan_range(s, e, 1, -1);
}

/* Which thread's stack a mapping holds: the stopped threads sorted by stack
 * pointer, the registry by stack base (with the running maximum of the
 * tops, for overlapping ranges: glibc hands an ended thread's stack to a new
 * one). Matching every mapping against every thread was 64 million steps
 * for 8,000 threads, whose stacks are 16,000 mappings. */
struct sp_ent { uintptr_t sp; size_t t; };
struct reg_ent { uintptr_t lo, hi, maxhi; size_t pos; struct hs_thread *t; };

static int sp_less(const void *x, const void *y) {
  const struct sp_ent *a = x, *b = y;
  return a->sp < b->sp || (a->sp == b->sp && a->t < b->t);
}
static int reg_less(const void *x, const void *y) { return ((const struct reg_ent *)x)->lo < ((const struct reg_ent *)y)->lo; }

static void swap_bytes(char *a, char *b, size_t sz) {
  for (size_t i = 0; i < sz; i++) {
    char x = a[i];
    a[i] = b[i];
    b[i] = x;
  }
}
static void sift(char *a, size_t i, size_t n, size_t sz, int (*less)(const void *, const void *)) {
  for (size_t c; (c = 2 * i + 1) < n; i = c) {
    if (c + 1 < n && less(a + c * sz, a + (c + 1) * sz)) c++;
    if (!less(a + i * sz, a + c * sz)) break;
    swap_bytes(a + i * sz, a + c * sz, sz);
  }
}
/* A heap sort: the check may not allocate (qsort can), and these arrays
 * are a few thousand entries. */
static void heap_sort(void *base, size_t n, size_t sz, int (*less)(const void *, const void *)) {
  char *a = base;
  for (size_t k = n / 2; k-- > 0;) sift(a, k, n, sz, less);
  for (size_t e = n; e-- > 1;) {
    swap_bytes(a, a + e * sz, sz);
    sift(a, 0, e, sz, less);
  }
}

/* The signal frames on the checking thread's stack, found before the
 * other threads stop (only one check runs at a time). */
static struct hs_sigframe sigf[HS_MAX_SIGFRAMES];
static size_t nsigf;
static uintptr_t restorer; /* glibc's signal trampoline, 0 when no signal has a handler */
static uintptr_t alt_lo, alt_hi; /* its alternate signal stack, when it runs on it */

/* An interrupted context's stack from its red zone up, as valgrind scans
 * stacks: the handler may have cut a leaf function short, and such a
 * function keeps its locals below its stack pointer (tests/progs/
 * sigframe.c: a block held only there was "definitely lost"). Not below
 * the mapping's start. */
static uintptr_t with_red_zone(uintptr_t sp, uintptr_t start) { return sp - start > 128 ? sp - 128 : start; }

static void scan_roots(struct hs_stopped *th, size_t nth, uintptr_t my_sp) {
  struct hs_thread *reg = hs_threads_list();
  size_t capreg = 0, nreg = 0, nsp = 0;
  for (struct hs_thread *t = reg; t; t = t->next) capreg++;
  struct sp_ent *sps = nth ? hs_mmap(nth * sizeof *sps) : NULL;
  struct reg_ent *regs = capreg ? hs_mmap(capreg * sizeof *regs) : NULL;
  size_t *cand = capreg ? hs_mmap(capreg * sizeof *cand) : NULL;
  int indexed = (!nth || sps) && (!capreg || (regs && cand));
  if (indexed) {
    for (size_t t = 0; t < nth; t++)
      if (th[t].stopped) sps[nsp++] = (struct sp_ent){th[t].sp, t};
    heap_sort(sps, nsp, sizeof *sps, sp_less);
    size_t pos = 0, k = 0;
    for (struct hs_thread *t = reg; t; t = t->next, pos++)
      if (t->stack_lo < t->stack_hi) regs[k++] = (struct reg_ent){t->stack_lo, t->stack_hi, 0, pos, t};
    nreg = k;
    heap_sort(regs, nreg, sizeof *regs, reg_less);
    for (size_t i = 0; i < nreg; i++) regs[i].maxhi = i && regs[i - 1].maxhi > regs[i].hi ? regs[i - 1].maxhi : regs[i].hi;
  }
  for (size_t k = 0; k < C.nmaps; k++) {
    const struct map *m = &C.maps[k];
    if (!m->r || !m->w || m->special || m->device || m->heap) continue;
    uintptr_t from = m->start;
    int is_stack = 0;
    C.cur_kind = m->file ? HS_ROOT_GLOBAL : HS_ROOT_MMAP;
    C.cur_tid = 0;
    /* A live thread's stack: only from its stack pointer up. This thread's
     * own, less the frames of the signals it is handling (hs_signal_frames):
     * each of its ranges begins at a stack pointer and ends at the next
     * signal frame, or at the end of its mapping. */
    for (size_t j = 0; j <= nsigf; j++) {
      /* An interrupted context from its red zone up (with_red_zone). The
       * threads the check stops are scanned from their stack pointer, as
       * LeakSanitizer does: those are mostly parked in a system call, and
       * below it lie stale copies the agent's own hooks left. */
      uintptr_t lo = j ? sigf[j - 1].resume_sp : my_sp, hi = j < nsigf ? sigf[j].lo : m->end;
      if (lo < m->start || lo >= m->end) continue;
      if (j) lo = with_red_zone(lo, m->start);
      uintptr_t top = lo >= alt_lo && lo < alt_hi ? alt_hi : m->end;
      if (hi > top || hi < lo) hi = top;
      is_stack = 1;
      C.cur_kind = HS_ROOT_STACK;
      C.cur_tid = gettid();
      hs_each_not_own(lo, hi, scan_root);
    }
    /* An alternate signal stack this thread runs on: only the ranges above.
     * It may be part of larger mappings (a static array in .bss, even
     * across two): the rest of those is data. */
    if (alt_lo < m->end && alt_hi > m->start) {
      C.cur_kind = m->file ? HS_ROOT_GLOBAL : HS_ROOT_MMAP;
      C.cur_tid = 0;
      if (m->start < alt_lo) hs_each_not_own(m->start, alt_lo, scan_root);
      if (alt_hi < m->end) hs_each_not_own(alt_hi, m->end, scan_root);
      continue;
    }
    if (is_stack) continue;
    /* the first stopped thread (in th's order) whose stack pointer is here */
    size_t best = (size_t)-1;
    if (!is_stack && indexed) {
      size_t lo = 0, hi = nsp;
      while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sps[mid].sp < m->start) lo = mid + 1; else hi = mid;
      }
      for (size_t i = lo; i < nsp && sps[i].sp < m->end; i++)
        if (sps[i].t < best) best = sps[i].t;
    } else if (!is_stack) {
      for (size_t t = 0; t < nth && best == (size_t)-1; t++)
        if (th[t].stopped && th[t].sp >= m->start && th[t].sp < m->end) best = t;
    }
    if (best != (size_t)-1) {
      from = th[best].sp;
      is_stack = 1;
      C.cur_kind = HS_ROOT_STACK;
      C.cur_tid = th[best].tid;
      /* A stopped thread inside a signal handler of the program: its
       * signal frames are not roots either, their saved registers are, and
       * the code they interrupted from its red zone up (as this thread's,
       * above). A frame whose interrupted stack is on another mapping (an
       * alternate signal stack, whose bounds only that thread knows) is
       * scanned as it is. */
      struct hs_sigframe f[HS_MAX_SIGFRAMES];
      size_t nf = hs_signal_frames_in(from, m->end, restorer, f, HS_MAX_SIGFRAMES);
      for (size_t j = 0; j < nf && f[j].resume_sp >= m->start && f[j].resume_sp < m->end; j++) {
        if (f[j].lo > from) hs_each_not_own(from, f[j].lo, scan_root);
        C.cur_kind = HS_ROOT_REGISTER;
        for (int r = 0; r < HS_SIGFRAME_REGS; r++) mark_ptr(f[j].regs[r], 1, (uintptr_t)r);
        C.cur_kind = HS_ROOT_STACK;
        uintptr_t next = with_red_zone(f[j].resume_sp, m->start);
        from = next > f[j].lo ? next : f[j].lo;
      }
    }
    /* The stack of a thread that ended (glibc caches them): its frames are
     * dead, only the top (thread descriptor, static TLS) is live data. A
     * live thread that did not stop is scanned whole: never a false leak.
     * The registry's threads whose stacks overlap this mapping, in the
     * registry's order. */
    size_t nc = 0;
    if (!is_stack && indexed) {
      size_t lo = 0, hi = nreg;
      while (lo < hi) { /* the first base at or above the mapping's end */
        size_t mid = (lo + hi) / 2;
        if (regs[mid].lo < m->end) lo = mid + 1; else hi = mid;
      }
      for (size_t j = lo; j-- > 0 && regs[j].maxhi > m->start;)
        if (regs[j].hi > m->start) {
          size_t i = nc++;
          for (; i > 0 && regs[cand[i - 1]].pos > regs[j].pos; i--) cand[i] = cand[i - 1];
          cand[i] = j;
        }
    }
    struct hs_thread *t = indexed ? NULL : reg;
    for (size_t c = 0; !is_stack && (indexed ? c < nc : t != NULL); c++, t = indexed ? NULL : t->next) {
      struct hs_thread *r = indexed ? regs[cand[c]].t : t;
      if (r->stack_lo >= m->end || r->stack_hi <= m->start) continue;
      if (!__atomic_load_n(&r->alive, __ATOMIC_ACQUIRE) && r->final_sp > from && r->final_sp < m->end) {
        from = r->final_sp;
        is_stack = 1;
        C.cur_kind = HS_ROOT_TLS; /* what is left of an ended thread: its descriptor and TLS */
        C.cur_tid = r->tid;
      } else if (r->alive) {
        C.cur_kind = HS_ROOT_STACK;
        C.cur_tid = r->tid;
      }
    }
    hs_each_not_own(from, m->end, scan_root);
  }
  if (sps) hs_munmap(sps, nth * sizeof *sps);
  if (regs) hs_munmap(regs, capreg * sizeof *regs);
  if (cand) hs_munmap(cand, capreg * sizeof *cand);
  C.cur_kind = HS_ROOT_REGISTER;
  C.cur_tid = gettid();
  for (size_t j = 0; j < nsigf; j++)
    for (int r = 0; r < HS_SIGFRAME_REGS; r++) mark_ptr(sigf[j].regs[r], 1, (uintptr_t)r);
  for (size_t t = 0; t < nth; t++)
    if (th[t].stopped) {
      C.cur_tid = th[t].tid;
      for (int r = 0; r < HS_NGREGS; r++) mark_ptr(th[t].regs[r], 1, (uintptr_t)r);
    }
}

/* ---- grouping ----------------------------------------------------------- */

static int kind_of(uint8_t state) {
  switch (state) {
  case UNREACHED: return HS_DEFINITE;
  case INDIRECT: return HS_INDIRECT;
  case POSSIBLE: return HS_POSSIBLE;
  default: return HS_REACHABLE;
  }
}

/* One record per (stack id, kind): stack ids are dense (the depot hands
 * them out in order), so a direct index finds the record. */
static int group(struct hs_leak_result *res) {
  size_t nst = (size_t)hs_depot_count() + 1;
  uint32_t *idx = hs_mmap(nst * HS_NKINDS * sizeof *idx); /* record index + 1 */
  size_t cap = nst * HS_NKINDS < C.n + 1 ? nst * HS_NKINDS : C.n + 1;
  struct hs_leak_record *rec = hs_mmap(cap * sizeof *rec);
  if (!idx || !rec) {
    if (idx) hs_munmap(idx, nst * HS_NKINDS * sizeof *idx);
    if (rec) hs_munmap(rec, cap * sizeof *rec);
    return -1;
  }
  size_t nrec = 0;
  for (size_t i = 0; i < C.n; i++) {
    const struct blk *b = &C.b[i];
    if (BIGNORED(b)) continue;
    int k = kind_of((uint8_t)STATE(i));
    const uint64_t bsize = BSIZE(b);
    const uint32_t bstack = BSTACK(b);
    res->bytes[k] += bsize;
    res->blocks[k]++;
    size_t key = (bstack < nst ? bstack : 0) * HS_NKINDS + (size_t)k;
    if (!idx[key]) {
      if (nrec == cap) continue;
      idx[key] = (uint32_t)++nrec;
      rec[nrec - 1].stack = bstack;
      rec[nrec - 1].kind = (uint8_t)k;
      rec[nrec - 1].first_addr = b->addr;
    }
    struct hs_leak_record *r = &rec[idx[key] - 1];
    r->bytes += bsize;
    r->blocks++;
    if (k == HS_DEFINITE) {
      r->indirect_bytes += C.ind_bytes[i];
      r->indirect_blocks += C.ind_blocks[i];
    }
    if (k == HS_POSSIBLE && C.max_off[i] > r->max_offset) r->max_offset = C.max_off[i];
    if ((k == HS_REACHABLE || k == HS_POSSIBLE) && C.root_of[i]) {
      const struct root *ro = &C.roots[C.root_of[i] - 1];
      unsigned j = 0;
      while (j < r->nret && !(r->ret[j].where == ro->where && r->ret[j].tid == ro->tid)) j++;
      if (j == r->nret && j < HS_MAX_RETAINERS) {
        r->ret[j] = (struct hs_retainer){.where = ro->where, .kind = ro->kind, .tid = ro->tid};
        r->nret++;
      }
      if (j < r->nret) {
        r->ret[j].bytes += bsize;
        r->ret[j].blocks++;
      }
    }
  }
  hs_munmap(idx, nst * HS_NKINDS * sizeof *idx);
  res->records = rec;
  res->nrecords = nrec;
  res->records_cap = cap;
  return 0;
}

static void release(void) {
  if (C.b) hs_munmap(C.b, C.taken_bytes);
  if (C.reg) hs_munmap(C.reg, C.nreg * sizeof *C.reg);
  if (C.reg_hash) hs_munmap(C.reg_hash, (C.reg_mask + 1) * sizeof *C.reg_hash);
  if (C.reg_pages) hs_munmap(C.reg_pages, C.npg * 257 * sizeof *C.reg_pages);
  if (C.stack) hs_munmap(C.stack, (C.n + 1) * sizeof *C.stack);
  if (C.ind_bytes) hs_munmap(C.ind_bytes, (C.n + 1) * sizeof *C.ind_bytes);
  if (C.ind_blocks) hs_munmap(C.ind_blocks, (C.n + 1) * sizeof *C.ind_blocks);
  if (C.max_off) hs_munmap(C.max_off, (C.n + 1) * sizeof *C.max_off);
  if (C.st) hs_munmap(C.st, C.n + 1);
  if (C.root_of) hs_munmap(C.root_of, (C.n + 1) * sizeof *C.root_of);
  if (C.roots) hs_munmap(C.roots, C.caproots * sizeof *C.roots);
  if (C.maps) hs_munmap(C.maps, (C.nmaps + 1) * sizeof *C.maps);
  if (C.maps_text) hs_munmap(C.maps_text, C.maps_text_cap);
  C.maps_text = NULL;
  memset(&C, 0, sizeof C);
}

static double now(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int hs_leak_check_cancel_off(struct hs_leak_result *res, uintptr_t my_sp, int take_table) {
  double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), t_take = 0, t_sort = 0, t_index = 0, t_mark = 0,
         t_group = 0;
  int saved_guard = hs_in_agent;
  hs_in_agent = 1;
  memset(res, 0, sizeof *res);
  memset(&C, 0, sizeof C);
  int rc = -1;

  hs_threads_lock();
  hs_table_lock_all();
  nsigf = hs_signal_frames(my_sp, sigf, HS_MAX_SIGFRAMES);
  restorer = hs_signal_restorer();
  stack_t ss;
  alt_lo = alt_hi = 0;
  /* by my_sp: the exit report runs on a stack of its own (agent.c) */
  if (nsigf && !hs_sigaltstack(NULL, &ss) && !(ss.ss_flags & SS_DISABLE) && my_sp >= (uintptr_t)ss.ss_sp &&
      my_sp - (uintptr_t)ss.ss_sp < ss.ss_size) {
    alt_lo = (uintptr_t)ss.ss_sp;
    alt_hi = alt_lo + ss.ss_size;
  }
  hs_checking = 1;
  struct hs_stopped *th = NULL;
  size_t nth = hs_stop_world(&th);
  for (size_t i = 0; i < nth; i++) res->nthreads_unstopped += !th[i].stopped;
  res->nthreads = nth + 1;

  size_t live = 0;
  int sorted = 0;
  C.b = hs_table_take(take_table, &live, &C.taken_bytes, &sorted);
  C.n = live;
  struct sigaction fa;
  checker_tid = gettid();
  memset(&fa, 0, sizeof fa);
  fa.sa_sigaction = on_fault;
  fa.sa_flags = SA_SIGINFO | SA_NODEFER;
  hs_sigaction(SIGSEGV, &fa, &old_segv);
  hs_sigaction(SIGBUS, &fa, &old_bus);

  if (!C.b) goto out;
  t_take = now(CLOCK_MONOTONIC) - t0;
  t_sort = now(CLOCK_MONOTONIC);
  if (C.n && !sorted) sort_range(C.b, C.n);
  t_sort = now(CLOCK_MONOTONIC) - t_sort;
  /* Blocks from the overflow (table.c) may repeat one of the shadow map: a
   * stale entry a free past the agent left. And exit() in a signal handler
   * that interrupted a removal from the overflow (hs_lock_slow took the
   * shard's lock over): its backward shift can have left one block in two
   * slots. Counted twice, the copy no pointer is matched to would look
   * lost. Sorted, copies are neighbours. */
  if ((!sorted || atomic_load(&hs_lock_taken_over)) && C.n) {
    size_t o = 1;
    for (size_t i = 1; i < C.n; i++)
      if (C.b[i].addr != C.b[o - 1].addr) C.b[o++] = C.b[i];
    C.n = o;
  }
  t_index = now(CLOCK_MONOTONIC);
  if (read_maps()) goto out;
  if (C.n) {
    C.lo = C.b[0].addr;
    C.hi = 0;
    for (size_t i = 0; i < C.n; i++) {
      uintptr_t e = C.b[i].addr + (BSIZE(&C.b[i]) ? BSIZE(&C.b[i]) : 1);
      if (e > C.hi) C.hi = e;
    }
    C.st = hs_mmap(C.n + 1);
    C.stack = hs_mmap((C.n + 1) * sizeof *C.stack);
    C.ind_bytes = hs_mmap((C.n + 1) * sizeof *C.ind_bytes);
    C.ind_blocks = hs_mmap((C.n + 1) * sizeof *C.ind_blocks);
    C.max_off = hs_mmap((C.n + 1) * sizeof *C.max_off);
    C.root_of = hs_mmap((C.n + 1) * sizeof *C.root_of);
    C.caproots = C.n + 1;
    C.roots = hs_mmap(C.caproots * sizeof *C.roots);
    C.parent = -1;
    if (!C.st || !C.stack || !C.ind_bytes || !C.ind_blocks || !C.max_off || !C.root_of || !C.roots || build_region_index())
      goto out;

    /* Blocks the program asked us to ignore are treated as roots. */
    C.cur_kind = HS_ROOT_IGNORED;
    for (size_t i = 0; i < C.n; i++)
      if (BIGNORED(&C.b[i])) {
        SET_STATE(i, REACHABLE);
        push((long)i);
      }
    t_index = now(CLOCK_MONOTONIC) - t_index;
    t_mark = now(CLOCK_MONOTONIC);
    if (hs_libc_data_hi) find_main_arena();
    scan_roots(th, nth, my_sp);
    drain(-1);
    for (size_t i = 0; i < C.n; i++)
      if (STATE(i) == UNREACHED) {
        push((long)i);
        drain((long)i);
      }
    t_mark = now(CLOCK_MONOTONIC) - t_mark;
  }
  t_group = now(CLOCK_MONOTONIC);
  rc = group(res);
  t_group = now(CLOCK_MONOTONIC) - t_group;
  res->scanned_bytes = C.scanned;

out:
  hs_sigaction(SIGSEGV, &old_segv, NULL);
  hs_sigaction(SIGBUS, &old_bus, NULL);
  hs_resume_world();
  hs_checking = 0;
  hs_table_unlock_all();
  hs_threads_unlock();
  release();
  if (hs_opt.check_timing)
    hs_warn("check_timing: %zu blocks, %zu threads stopped, %lu ms wall, %lu ms CPU (stop and take %lu ms, sort %lu ms, "
            "index %lu ms, roots and mark %lu ms, group %lu ms), stopped by %s",
            live, res->nthreads - 1 - res->nthreads_unstopped, (unsigned long)((now(CLOCK_MONOTONIC) - t0) * 1e3),
            (unsigned long)((now(CLOCK_PROCESS_CPUTIME_ID) - c0) * 1e3), (unsigned long)(t_take * 1e3),
            (unsigned long)(t_sort * 1e3), (unsigned long)(t_index * 1e3), (unsigned long)(t_mark * 1e3),
            (unsigned long)(t_group * 1e3), hs_last_stop_method());
  hs_in_agent = saved_guard;
  return rc;
}

int hs_leak_check(struct hs_leak_result *res, uintptr_t my_sp, int take_table) {
  int cs = hs_cancel_off();
  int r = hs_leak_check_cancel_off(res, my_sp, take_table);
  hs_cancel_restore(cs);
  return r;
}

void hs_leak_result_free(struct hs_leak_result *res) {
  if (res->records) hs_munmap(res->records, res->records_cap * sizeof *res->records);
  res->records = NULL;
}
