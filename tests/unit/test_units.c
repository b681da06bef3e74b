/* Unit tests for the pure parts: options, suppressions, JSON strings, the
 * block table, the stack depot, and the leak classification on synthetic
 * pointer graphs (memcheck's rules). The agent's objects are linked in with
 * tracking off, so the hooks pass every call through. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../src/agent/hs.h"
#include "../../src/report/buf.h"
#include "../../src/report/suppress.h"

/* agent.c is not linked: the exit report is not under test here. */
void hs_report_at_exit(int status, uintptr_t sp) {
  (void)status;
  (void)sp;
}
int hs_init_early(void) { return 0; } /* the tests set hs_active themselves */
int hs_own_process(void) { return 1; }

static void test_parse_size(void **st) {
  (void)st;
  unsigned long v;
  assert_int_equal(hs_parse_size("512K", &v), 0);
  assert_int_equal(v, 512 * 1024);
  assert_int_equal(hs_parse_size("3M", &v), 0);
  assert_int_equal(v, 3ul << 20);
  assert_int_equal(hs_parse_size("64KiB", &v), 0);
  assert_int_equal(v, 64 * 1024);
  assert_int_equal(hs_parse_size("17", &v), 0);
  assert_int_equal(v, 17);
  assert_int_not_equal(hs_parse_size("", &v), 0);
  assert_int_not_equal(hs_parse_size("K", &v), 0);
  assert_int_not_equal(hs_parse_size("12Q", &v), 0);
  assert_int_not_equal(hs_parse_size("99999999999999999999", &v), 0);
}

static void test_parse_kinds(void **st) {
  (void)st;
  int ok;
  assert_int_equal(hs_parse_kinds("all", &ok), 0xf);
  assert_true(ok);
  assert_int_equal(hs_parse_kinds("definite,possible", &ok), HS_KIND_BIT(HS_DEFINITE) | HS_KIND_BIT(HS_POSSIBLE));
  assert_true(ok);
  assert_int_equal(hs_parse_kinds("indirect+reachable", &ok), HS_KIND_BIT(HS_INDIRECT) | HS_KIND_BIT(HS_REACHABLE));
  assert_true(ok);
  hs_parse_kinds("definite,bogus", &ok);
  assert_false(ok);
  hs_parse_kinds("defin", &ok);
  assert_false(ok);
}

static void test_options(void **st) {
  (void)st;
  struct hs_options o;
  char err[256];
  hs_options_defaults(&o);
  assert_int_equal(o.max_frames, 64);
  assert_int_equal(o.leak_check, HS_LC_FULL);
  assert_int_equal(o.show_leak_kinds, 7);
  assert_int_equal(hs_options_parse("max_frames=12,leak-check=summary,report=/tmp/x%p.json,follow_children=no", &o, err,
                                    sizeof err),
                   0);
  assert_int_equal(o.max_frames, 12);
  assert_int_equal(o.leak_check, HS_LC_SUMMARY);
  assert_string_equal(o.report, "/tmp/x%p.json");
  assert_int_equal(o.follow_children, 0);
  assert_int_equal(hs_options_parse("suppressions=/a,suppressions=/b", &o, err, sizeof err), 0);
  assert_string_equal(o.suppressions, "/a:/b");
  assert_int_not_equal(hs_options_parse("nope=1", &o, err, sizeof err), 0);
  assert_non_null(strstr(err, "unknown option 'nope'"));
  assert_int_not_equal(hs_options_parse("max_frames=x", &o, err, sizeof err), 0);
  assert_non_null(strstr(err, "bad value"));
  assert_int_not_equal(hs_options_parse("justakey", &o, err, sizeof err), 0);
  assert_int_not_equal(hs_options_parse("mode=fast", &o, err, sizeof err), 0);
}

static void test_supp_match(void **st) {
  (void)st;
  assert_true(hs_supp_match("leak_here", "leak_here"));
  assert_true(hs_supp_match("leak", "my_leak_here"));
  assert_true(hs_supp_match("^leak", "leak_here"));
  assert_false(hs_supp_match("^leak", "my_leak"));
  assert_true(hs_supp_match("here$", "leak_here"));
  assert_false(hs_supp_match("here$", "here_leak"));
  assert_true(hs_supp_match("^a*c$", "abbbc"));
  assert_false(hs_supp_match("^a*c$", "abbbcd"));
  assert_true(hs_supp_match("lib*.so", "/usr/lib/libfoo.so.1"));
  assert_true(hs_supp_match("Foo::bar", "Foo::bar(int)"));
  assert_false(hs_supp_match("x", NULL));
}

static void test_supp_load(void **st) {
  (void)st;
  char path[] = "/tmp/hs-unit-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *text = "# comment\n\n  leak:foo  \nthread:worker\nleak:bar*baz\n";
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  struct hs_supp_list l = {0};
  char err[256];
  assert_int_equal(hs_supp_load(&l, path, err, sizeof err), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[0].pattern, "foo");
  assert_int_equal(l.v[1].is_thread, 1);
  assert_string_equal(l.v[2].pattern, "bar*baz");
  hs_supp_free(&l);
  fd = open(path, O_WRONLY | O_TRUNC);
  assert_int_equal(write(fd, "leak:\n", 6), 6);
  close(fd);
  assert_int_not_equal(hs_supp_load(&l, path, err, sizeof err), 0);
  assert_non_null(strstr(err, ":1:"));
  hs_supp_free(&l);
  unlink(path);
  assert_int_not_equal(hs_supp_load(&l, "/no/such/file", err, sizeof err), 0);
  assert_non_null(strstr(err, "cannot read"));
  hs_supp_free(&l);
}

static void test_json_string(void **st) {
  (void)st;
  struct hs_buf b = {0};
  hs_buf_json_str(&b, "a\"b\\c\n\x01");
  assert_string_equal(b.s, "\"a\\\"b\\\\c\\u000a\\u0001\"");
  hs_buf_free(&b);
  hs_buf_json_str(&b, NULL);
  assert_string_equal(b.s, "null");
  hs_buf_free(&b);
}

/* Random inserts and removes checked against a plain array, then the
 * table's whole list (hs_table_take) against the live keys. */
static int cmp_uptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}
static size_t key_size(int i) { return i % 97 == 5 ? (size_t)1 << 38 : (size_t)i; } /* some too big for a word */
static void table_round(const uintptr_t *keys, int n_keys, int exclusive, int expect_sorted) {
  hs_table_units_exclusive = exclusive;
  char *live = calloc((size_t)n_keys, 1);
  srand(7);
  for (int round = 0; round < 4 * n_keys; round++) {
    int i = rand() % n_keys;
    uint64_t m;
    if (live[i]) {
      assert_int_equal(hs_table_remove(keys[i], &m), 1);
      assert_int_equal(hs_meta_size(m), key_size(i));
      live[i] = 0;
    } else {
      hs_table_insert(keys[i], hs_meta(key_size(i), (uint32_t)i & HS_MAX_STACK_ID));
      live[i] = 1;
    }
  }
  size_t n = 0;
  for (int i = 0; i < n_keys; i++) {
    uint64_t m;
    assert_int_equal(hs_table_lookup(keys[i], &m), live[i]);
    if (live[i]) {
      assert_int_equal(hs_meta_stack(m), (uint32_t)i & HS_MAX_STACK_ID);
      assert_int_equal(hs_meta_size(m), key_size(i));
      n++;
    }
  }
  assert_int_equal(hs_table_count(), n);
  /* every live block once; in address order when the overflow is empty */
  size_t got = 0, bytes = 0;
  int sorted = -1;
  uintptr_t(*b)[2] = hs_table_take(0, &got, &bytes, &sorted);
  assert_non_null(b);
  assert_int_equal(got, n);
  assert_int_equal(sorted, expect_sorted);
  if (sorted)
    for (size_t i = 1; i < got; i++) assert_true(b[i - 1][0] < b[i][0]);
  uintptr_t *want = calloc(n + 1, sizeof *want), *have = calloc(n + 1, sizeof *have);
  for (int i = 0, k = 0; i < n_keys; i++)
    if (live[i]) want[k++] = keys[i];
  for (size_t i = 0; i < got; i++) have[i] = b[i][0];
  qsort(want, n, sizeof *want, cmp_uptr);
  qsort(have, n, sizeof *have, cmp_uptr);
  assert_memory_equal(want, have, n * sizeof *want);
  hs_munmap(b, bytes);
  for (int i = 0; i < n_keys; i++) {
    uint64_t m;
    if (live[i]) assert_int_equal(hs_table_remove(keys[i], &m), 1);
  }
  assert_int_equal(hs_table_count(), 0);
  free(want);
  free(have);
  free(live);
  hs_table_units_exclusive = 0;
}

static void test_table(void **st) {
  (void)st;
  enum { N = 20000 };
  uintptr_t *keys = calloc(N, sizeof *keys);
  /* glibc's blocks: 16-byte aligned, at least 32 bytes apart, in two
   * distant heaps; the words alone hold them (the too-big ones aside) */
  for (int i = 0; i < N; i++) keys[i] = (i & 1 ? 0x7f1234500010ul : 0x55aa00000000ul) + (uintptr_t)i * 48;
  table_round(keys, N, 1, 0);
  for (int i = 0; i < N; i++)
    if (i % 97 == 5) keys[i] = 0x7f0000000000ul + (uintptr_t)i * 4096; /* keep the too-big ones apart */
  table_round(keys, N, 1, 0);
  /* Another allocator's: 8 and 16 bytes apart, so units are shared, and
   * addresses past 47 bits: words and overflow together */
  for (int i = 0; i < N; i++)
    keys[i] = 0x10000000ul + (uintptr_t)i * 8 + (i % 501 == 7 ? (1ul << 48) : 0);
  table_round(keys, N, 0, 0);
  free(keys);
}

/* Words only: sorted, also across regions that got their words in the
 * other order (the inserts go down through six 1 MiB regions). */
static void test_table_sorted(void **st) {
  (void)st;
  enum { N = 5000 };
  uintptr_t keys[N];
  for (int i = 0; i < N; i++) keys[i] = 0x55aa10000000ul + (uintptr_t)(N - i) * 1040 + (i & 1) * 16;
  hs_table_units_exclusive = 1;
  for (int i = 0; i < N; i++) hs_table_insert(keys[i], hs_meta(100, 3));
  size_t got = 0, bytes = 0;
  int sorted = 0;
  uintptr_t(*b)[2] = hs_table_take(1, &got, &bytes, &sorted);
  assert_int_equal(got, N);
  assert_true(sorted);
  for (int i = 0; i < N; i++) assert_int_equal(b[i][0], keys[N - 1 - i]);
  hs_munmap(b, bytes);
  assert_int_equal(hs_table_count(), 0); /* released */
  hs_table_units_exclusive = 0;
}

/* exit() in a signal handler that lands in grow(), between its switch of
 * array and capacity: the exit report packs the table (hs_table_take) right
 * there, and never returns (longjmp here). It read the new array with the
 * old capacity and lost about half the shard. Leaves the table unusable:
 * the last test. */
extern void (*hs_table_midgrow)(void);
static jmp_buf midgrow_jb;
static uintptr_t midgrow_keys[193];
static void take_midgrow(void) {
  hs_table_midgrow = NULL;
  size_t n = 0, bytes = 0;
  int sorted = 1;
  const uintptr_t(*b)[2] = hs_table_take(1, &n, &bytes, &sorted);
  assert_non_null(b);
  assert_int_equal(n, 192);
  assert_false(sorted); /* the overflow held them */
  size_t found = 0;
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < 192; k++) found += b[i][0] == midgrow_keys[k];
  assert_int_equal(found, 192);
  longjmp(midgrow_jb, 1);
}
static void test_table_take_midgrow(void **st) {
  (void)st;
  /* Not 16-byte aligned: the overflow hash table's (table.c). One 1 MiB
   * region: one shard, which grows at its 193rd block. */
  for (int i = 0; i < 193; i++) midgrow_keys[i] = 0x7f0000000008ul + (uintptr_t)i * 32;
  for (int i = 0; i < 192; i++) hs_table_insert(midgrow_keys[i], hs_meta(32, 1));
  assert_int_equal(hs_table_count(), 192);
  hs_table_midgrow = take_midgrow;
  if (!setjmp(midgrow_jb)) {
    hs_table_insert(midgrow_keys[192], hs_meta(32, 1));
    fail_msg("the 193rd insert did not grow the shard");
  }
}

static void test_depot(void **st) {
  (void)st;
  uintptr_t a[3] = {1, 2, 3}, b[3] = {1, 2, 4};
  uint32_t ia = hs_depot_put(a, 3), ib = hs_depot_put(b, 3), ia2 = hs_depot_put(a, 3);
  assert_int_not_equal(ia, 0);
  assert_int_not_equal(ia, ib);
  assert_int_equal(ia, ia2);
  assert_int_equal(hs_depot_put(a, 2) != ia, 1);
  unsigned n;
  const uintptr_t *f = hs_depot_get(ib, &n);
  assert_int_equal(n, 3);
  assert_int_equal(f[2], 4);
  assert_null(hs_depot_get(999999, &n));
  assert_int_equal(hs_depot_put(a, 0), HS_STACK_NONE);
  /* frames read i * 2 words apart (the unwinder's steps) name the same
   * stacks, and a new one is stored contiguous */
  uintptr_t sa[6] = {1, 91, 2, 92, 3, 93}, sc[6] = {7, 0, 8, 0, 9, 0};
  uint64_t sum, sum2;
  assert_int_equal(hs_depot_put_sum(sa, 3, 2, 0, &sum), ia);
  assert_int_equal(hs_depot_put_sum(sa, 2, 2, 0, &sum2), hs_depot_put(a, 2));
  /* the sum is the documented polynomial: frames weighted by distance
   * from the outer end, so a shared outer part has the same terms */
  assert_true(sum == 1 * hs_depot_pw[2] + 2 * hs_depot_pw[1] + 3 * hs_depot_pw[0]);
  assert_true(sum2 == 1 * hs_depot_pw[1] + 2 * hs_depot_pw[0]);
  uint64_t known = sum;
  assert_int_equal(hs_depot_put_sum(a, 3, 1, 1, &known), ia); /* a sum given finds the stack */
  uint32_t ic = hs_depot_put_sum(sc, 3, 2, 0, &sum);
  assert_int_not_equal(ic, ia);
  f = hs_depot_get(ic, &n);
  assert_int_equal(n, 3);
  assert_int_equal(f[0], 7);
  assert_int_equal(f[1], 8);
  assert_int_equal(f[2], 9);
  uintptr_t c[3] = {7, 8, 9};
  assert_int_equal(hs_depot_put(c, 3), ic);
}

/* The depot's index grows (doubling, under its lock) while other threads
 * look up: two threads put the same 20,000 new stacks in opposite orders;
 * each stack must get one id, whoever put it first. */
#define NGROW 20000
static uint32_t grow_ids[2][NGROW];
static void *depot_putter(void *arg) {
  int t = (int)(intptr_t)arg;
  for (int k = 0; k < NGROW; k++) {
    int i = t ? NGROW - 1 - k : k;
    uintptr_t f[4] = {0x5000, 0x6000 + (uintptr_t)i, 0x7000, (uintptr_t)i * 3};
    grow_ids[t][i] = hs_depot_put(f, 4);
  }
  return NULL;
}
static void test_depot_grows(void **st) {
  (void)st;
  uint32_t before = hs_depot_count();
  pthread_t th[2];
  for (int t = 0; t < 2; t++) assert_int_equal(pthread_create(&th[t], NULL, depot_putter, (void *)(intptr_t)t), 0);
  for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
  assert_int_equal(hs_depot_count(), before + NGROW);
  for (int i = 0; i < NGROW; i++) {
    assert_int_not_equal(grow_ids[0][i], HS_STACK_NONE);
    assert_int_equal(grow_ids[0][i], grow_ids[1][i]);
    unsigned n;
    const uintptr_t *f = hs_depot_get(grow_ids[0][i], &n);
    assert_int_equal(n, 4);
    assert_int_equal(f[1], 0x6000 + (uintptr_t)i);
    uintptr_t again[4] = {0x5000, 0x6000 + (uintptr_t)i, 0x7000, (uintptr_t)i * 3};
    assert_int_equal(hs_depot_put(again, 4), grow_ids[0][i]);
  }
}

/* ---- classification on synthetic graphs ------------------------------ */

/* The roots live in their own mapping: linked statically, the agent counts
 * this whole executable's data as its own, which is never a root. */
static uintptr_t *roots;
static char *arena;
static size_t arena_used;

static uintptr_t *blk(size_t size, uint32_t tag) {
  char *p = arena + arena_used;
  arena_used += (size + 64) & ~(size_t)63; /* distinct even for size 0 */
  hs_table_insert((uintptr_t)p, hs_meta(size, tag));
  return (uintptr_t *)p;
}

struct found {
  int kind;
  uint64_t bytes, blocks, ind_bytes, ind_blocks;
};
static struct found by_tag[32];

/* Runs a check with the stack scanned from sp, and files its records with
 * stacks (tags) first..31 in by_tag; a tag with two kinds keeps the
 * definitely lost one (the tag 5/6 tests). */
static void collect_tags(struct hs_leak_result *res, uintptr_t sp, int take, unsigned first) {
  assert_int_equal(hs_leak_check(res, sp, take), 0);
  memset(by_tag, 0xff, sizeof by_tag);
  for (size_t i = 0; i < res->nrecords; i++) {
    const struct hs_leak_record *r = &res->records[i];
    if (getenv("HS_UNIT_DEBUG")) fprintf(stderr, "rec stack %u kind %d bytes %lu blocks %lu\n", r->stack, r->kind, (unsigned long)r->bytes, (unsigned long)r->blocks);
    if (r->stack < first || r->stack >= 32) continue;
    struct found *f = &by_tag[r->stack];
    if (f->kind != -1 && f->kind != r->kind && r->kind != HS_DEFINITE) continue;
    *f = (struct found){r->kind, r->bytes, r->blocks, r->indirect_bytes, r->indirect_blocks};
  }
}

__attribute__((noinline)) static void build_graph(void) {
  /* tag 1: root -> A -> B (start pointers): reachable. */
  uintptr_t *a = blk(32, 1), *b = blk(48, 1);
  a[0] = (uintptr_t)b;
  roots[0] = (uintptr_t)a;
  /* tag 2: root -> C+16 (interior) -> D (start): both possibly lost. */
  uintptr_t *c = blk(64, 2), *d = blk(16, 3);
  c[0] = 0; /* no heuristic applies */
  c[3] = (uintptr_t)d;
  roots[1] = (uintptr_t)c + 16;
  /* tag 4: E -> F -> G, unrooted: E definite, F and G indirect. */
  uintptr_t *e = blk(24, 4), *f = blk(40, 5), *g = blk(56, 5);
  e[0] = (uintptr_t)f;
  f[1] = (uintptr_t)g + 8; /* interior pointers count within a clique */
  /* tag 6: a cycle X <-> Y, unrooted: one definite, one indirect. */
  uintptr_t *x = blk(32, 6), *y = blk(32, 6);
  x[0] = (uintptr_t)y;
  y[0] = (uintptr_t)x;
  /* tag 7: new[] heuristic: count 3, 3 elements of 16 bytes, pointer at +8. */
  uintptr_t *na = blk(8 + 3 * 16, 7);
  na[0] = 3;
  roots[2] = (uintptr_t)na + 8;
  /* tag 8: an ignored block is not reported. */
  uintptr_t *ig = blk(100, 8);
  hs_table_set_flag((uintptr_t)ig, HS_META_IGNORED);
  /* tag 9: a zero-sized block pointed at is reachable. */
  uintptr_t *z = blk(0, 9);
  roots[3] = (uintptr_t)z;
  /* tag 10: pointer one past the end does not count: definite. */
  uintptr_t *pe = blk(16, 10);
  roots[4] = (uintptr_t)pe + 16;
}

__attribute__((noinline)) static void scrub_stack(void) {
  volatile char pad[16384];
  memset((char *)pad, 0, sizeof pad);
}

static void check_graph(int take);
static void test_classification(void **st) {
  (void)st;
  /* the tags below stand for stack ids: make sure the depot has that many */
  for (uintptr_t f = 1000; f < 1020; f++) hs_depot_put(&f, 1);
  arena = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(arena != MAP_FAILED);
  roots = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(roots != MAP_FAILED);
  build_graph();
  scrub_stack();
  /* once on a copy of the table, then as the last check does: using the
   * table's own pages up */
  check_graph(0);
  size_t before = hs_table_count();
  scrub_stack();
  check_graph(1);
  assert_true(before > 0);
  assert_int_equal(hs_table_count(), 0);
}

static void check_graph(int take) {
  struct hs_leak_result res;
  collect_tags(&res, (uintptr_t)__builtin_frame_address(0), take, 0);
  assert_int_equal(by_tag[1].kind, HS_REACHABLE);
  assert_int_equal(by_tag[1].blocks, 2);
  assert_int_equal(by_tag[2].kind, HS_POSSIBLE);
  assert_int_equal(by_tag[3].kind, HS_POSSIBLE);
  assert_int_equal(by_tag[4].kind, HS_DEFINITE);
  assert_int_equal(by_tag[4].ind_bytes, 96);
  assert_int_equal(by_tag[4].ind_blocks, 2);
  assert_int_equal(by_tag[5].kind, HS_INDIRECT);
  assert_int_equal(by_tag[5].bytes, 96);
  assert_int_equal(by_tag[6].kind, HS_DEFINITE);
  assert_int_equal(by_tag[6].blocks, 1);
  assert_int_equal(by_tag[6].ind_bytes, 32);
  assert_int_equal(by_tag[7].kind, HS_REACHABLE);
  assert_int_equal(by_tag[8].kind, -1);
  assert_int_equal(by_tag[9].kind, HS_REACHABLE);
  assert_int_equal(by_tag[10].kind, HS_DEFINITE);
  hs_leak_result_free(&res);
}

/* The check's address lookup (region index, page tables, the fallback for
 * addresses in regions without blocks) on blocks spread over six 1 MiB
 * regions, some dense, some spanning regions; both check paths. */
static void check_regions(int take);
/* Its locals die before the check: only the roots array holds pointers. */
__attribute__((noinline)) static void build_regions(char *base) {
  const size_t mib = 1 << 20;
  uintptr_t *r = roots + 16;
  memset(roots, 0, 4096);
  /* region 0: a chain of 200 blocks, 64 bytes apart, each holding the next
   * one's address + 8: the first is reachable (tag 20), the rest possible (21) */
  uintptr_t *prev = NULL;
  for (int k = 0; k < 200; k++) {
    uintptr_t *b = (uintptr_t *)(base + 64 * k);
    hs_table_insert((uintptr_t)b, hs_meta(48, k ? 21 : 20));
    if (prev) prev[0] = (uintptr_t)b + 8;
    prev = b;
  }
  r[0] = (uintptr_t)base;
  /* region 0: a pointer into a page without blocks, past a block's end:
   * that block stays definitely lost (22) */
  hs_table_insert((uintptr_t)(base + mib / 2), hs_meta(64, 22));
  r[1] = (uintptr_t)(base + mib / 2 + 4096 + 8);
  /* regions 1-2: a 1.5 MiB block (23) reached by an interior pointer in
   * region 2, before region 2's first block: possibly lost */
  char *big = base + mib + 4096;
  hs_table_insert((uintptr_t)big, hs_meta(mib + mib / 2, 23));
  r[2] = (uintptr_t)(base + 2 * mib + mib / 4);
  /* region 2: 100 unreferenced blocks after the big one: definitely lost (24) */
  for (int k = 0; k < 100; k++) hs_table_insert((uintptr_t)(big + mib + mib / 2 + 4096 + 64 * k), hs_meta(32, 24));
  /* regions 3-4: a 2 MiB block (25) reached from region 4, which holds no
   * block start (the lookup's fallback): possibly lost */
  hs_table_insert((uintptr_t)(base + 3 * mib), hs_meta(2 * mib, 25));
  r[3] = (uintptr_t)(base + 4 * mib + mib / 2);
  /* region 5: pointers just before and after a block (26): definitely lost */
  hs_table_insert((uintptr_t)(base + 5 * mib + 128), hs_meta(64, 26));
  r[4] = (uintptr_t)(base + 5 * mib + 120);
  r[5] = (uintptr_t)(base + 5 * mib + 192);
}

static void test_regions(void **st) {
  (void)st;
  for (uintptr_t f = 2000; f < 2040; f++) hs_depot_put(&f, 1);
  const size_t mib = 1 << 20;
  char *m = mmap(NULL, 7 * mib, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  /* base is the first block's address: a pointer to it on the stack is harmless */
  build_regions((char *)(((uintptr_t)m + mib - 1) & ~(uintptr_t)(mib - 1)));
  scrub_stack();
  check_regions(0);
  scrub_stack();
  check_regions(1);
  munmap(m, 7 * mib);
}

static void check_regions(int take) {
  struct hs_leak_result res;
  collect_tags(&res, (uintptr_t)__builtin_frame_address(0), take, 20);
  assert_int_equal(by_tag[20].kind, HS_REACHABLE);
  assert_int_equal(by_tag[21].kind, HS_POSSIBLE);
  assert_int_equal(by_tag[21].blocks, 199);
  assert_int_equal(by_tag[22].kind, HS_DEFINITE);
  assert_int_equal(by_tag[23].kind, HS_POSSIBLE);
  assert_int_equal(by_tag[24].kind, HS_DEFINITE);
  assert_int_equal(by_tag[24].blocks, 100);
  assert_int_equal(by_tag[25].kind, HS_POSSIBLE);
  assert_int_equal(by_tag[26].kind, HS_DEFINITE);
  hs_leak_result_free(&res);
}

int main(void) {
  hs_options_defaults(&hs_opt);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_size),  cmocka_unit_test(test_parse_kinds), cmocka_unit_test(test_options),
      cmocka_unit_test(test_supp_match),  cmocka_unit_test(test_supp_load),   cmocka_unit_test(test_json_string),
      cmocka_unit_test(test_table), cmocka_unit_test(test_table_sorted),       cmocka_unit_test(test_depot), cmocka_unit_test(test_depot_grows),       cmocka_unit_test(test_classification), cmocka_unit_test(test_regions),
      cmocka_unit_test(test_table_take_midgrow), /* last: leaves the table unusable */
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
