/* Stacks that stress the unwinder's reuse of the previous walk
 * (tests/programs.sh runs it with verify_unwind=1): the same function put
 * at the same stack address by two different callers with frames of the
 * same size, frame-pointer frames (VLAs: the CFA is rbp-based), varying
 * recursion depth, callbacks from libc (qsort), and threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile sink;
volatile int zero;

__attribute__((noinline)) static void leafalloc(int n) {
  void *p = malloc((size_t)(16 + n % 200));
  sink = p;
  free(p);
}

/* a() and b() have the same frame: leafalloc lands at the same address
 * under either, with a different return address one frame up. */
__attribute__((noinline)) static void a(int n) {
  volatile char pad[64];
  pad[0] = (char)n;
  leafalloc(n + pad[0]);
}
__attribute__((noinline)) static void b(int n) {
  volatile char pad[64];
  pad[0] = (char)n;
  leafalloc(n + pad[0]);
}

/* A VLA makes gcc compute the CFA from rbp. */
__attribute__((noinline)) static void vla(int n) {
  volatile char buf[16 + (n & 15)];
  buf[0] = (char)n;
  if (n & 1)
    a(n + buf[0]);
  else
    b(n + buf[0]);
}

__attribute__((noinline)) static int deep(int d, int n) {
  if (d > 0) {
    int r = deep(d - 1, n);
    __asm__ volatile("" : "+r"(r));
    return r + 1;
  }
  if (n % 3 == 0) vla(n);
  else if (n % 3 == 1) a(n);
  else b(n);
  return 0;
}

static int cmp(const void *x, const void *y) {
  leafalloc(*(const int *)x);
  return *(const int *)x - *(const int *)y;
}

static void *thread(void *arg) {
  long id = (long)arg;
  for (int i = 0; i < 20000; i++) deep((int)((i * 7 + id) % 23), i);
  return NULL;
}

/* "cycle": a loop that allocates from six call paths in turn, as an
 * interpreter's evaluation loop does. Each path's stack recurs every sixth
 * capture: the unwinder keeps several recent walks for this. */
__attribute__((noinline)) static void c1(int n) { a(n); }
__attribute__((noinline)) static void c2(int n) { b(n); }
__attribute__((noinline)) static void c3(int n) { c1(n); }
__attribute__((noinline)) static void c4(int n) { c2(n); }
__attribute__((noinline)) static void c5(int n) { leafalloc(n); }
__attribute__((noinline)) static void c6(int n) { c5(n); }
static void cycle(void) {
  for (int i = 0; i < 20000; i++) {
    c1(i);
    c2(i);
    c3(i);
    c4(i);
    c5(i);
    c6(i);
    __asm__ volatile("" ::: "memory"); /* keeps the calls apart */
  }
}

/* "shift": the rbp trap. shift_outer's VLA and shift_mid's VLA change size
 * in opposite directions, so leafalloc runs at the same stack address every
 * time while shift_mid's frame (its CFA computed from rbp) moves by 64
 * bytes. Where shift_mid's return address was in one call lies, in the
 * next, inside shift_outer's buffer, never written: it still holds the old
 * return address. The return addresses a recent walk read all look the
 * same; only rbp shows that shift_mid returns to the other call site. */
__attribute__((noinline)) static void shift_mid(int n) {
  volatile char buf[n];
  buf[0] = 0;
  leafalloc(n);
  __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void shift_outer(int d, int n, int site) {
  volatile char pad[d];
  pad[0] = 0;
  if (site) { /* two call sites: the stores after them keep them apart */
    shift_mid(n);
    zero = 1;
  } else {
    shift_mid(n);
    zero = 2;
  }
}
static void shift(void) {
  for (int i = 0; i < 20000; i++) shift_outer(i & 1 ? 64 : 128, i & 1 ? 128 : 64, i & 1);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "shift")) {
    shift();
    puts("done");
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "cycle")) {
    cycle();
    puts("done");
    return 0;
  }
  pthread_t t[2];
  for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, thread, (void *)i);
  for (int i = 0; i < 50000; i++) {
    deep(i % 17, i);
    if (i % 1000 == 0) {
      int v[64];
      for (int k = 0; k < 64; k++) v[k] = (k * 37) % 64;
      qsort(v, 64, sizeof v[0], cmp);
    }
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  puts("done");
  return 0;
}
