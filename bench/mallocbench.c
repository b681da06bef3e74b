/* malloc/free microbenchmark: T threads, each allocating and freeing at the
 * bottom of a call chain DEPTH frames deep, sizes 16..1024, a small working
 * set so the allocator stays in its fast path. Built without frame pointers.
 * usage: mallocbench THREADS ITERATIONS DEPTH */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long iters;
static int depth;
void *volatile sink;

__attribute__((noinline)) static unsigned long work(int d, unsigned long seed) {
  if (d > 0) {
    /* the empty asm after the call keeps it a real call: without it gcc
     * turns the recursion into a loop and the stack is 1 frame deep */
    unsigned long r = work(d - 1, seed * 6364136223846793005ul + 1);
    __asm__ volatile("" : "+r"(r));
    return r + 1;
  }
  void *slots[64] = {0};
  unsigned long x = seed;
  for (long i = 0; i < iters; i++) {
    x = x * 6364136223846793005ul + 1442695040888963407ul;
    unsigned s = (unsigned)(x >> 58);
    free(slots[s]);
    slots[s] = malloc(16 + ((x >> 20) & 1008));
    sink = slots[s];
  }
  for (int i = 0; i < 64; i++) free(slots[i]);
  return x & 1;
}

static void *thread(void *arg) { return (void *)work(depth, (unsigned long)arg); }

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  iters = argc > 2 ? atol(argv[2]) : 1000000;
  depth = argc > 3 ? atoi(argv[3]) : 15;
  pthread_t t[64];
  for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, thread, (void *)(long)(i + 1));
  for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
  return 0;
}
