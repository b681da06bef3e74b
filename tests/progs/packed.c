/* Blocks 8 bytes apart (under tests/progs/packed_malloc.c): 400 kept in a
 * global array, 300 freed, 400 dropped, on two threads at once so that
 * both halves of a unit are taken at the same time. No stdio: the program
 * makes no block of its own. */
#include <pthread.h>
#include <stdlib.h>

void *keep[2][200];

static __attribute__((noinline)) void drop(int n) {
  for (int i = 0; i < n; i++) {
    volatile char *p = malloc(1 + (size_t)i % 24);
    p[0] = 1;
  }
}

static void *work(void *arg) {
  long t = (long)arg;
  for (int i = 0; i < 200; i++) {
    keep[t][i] = malloc(1 + (size_t)i % 24);
    void *volatile f = malloc(1 + (size_t)(i + 7) % 24);
    if (i < 150) free(f); /* the last 50 are dropped */
  }
  drop(150);
  return NULL;
}

static __attribute__((noinline)) void smear(void) {
  volatile char buf[4096];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
}

int main(void) {
  pthread_t th[2];
  for (long t = 0; t < 2; t++) pthread_create(&th[t], NULL, work, (void *)t);
  for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
  smear();
  return 0;
}
