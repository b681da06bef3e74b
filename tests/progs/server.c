/* A long-running program for the HTTP tests: two threads allocate and free
 * (churn) while a global cache grows, until it has run for argv[1] seconds.
 * At the end it prints to stderr the longest time one request took: a
 * profile taken meanwhile must not hold the allocating threads up. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct entry {
  struct entry *next;
  char *value;
};
struct entry *cache; /* grows forever */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop;
void *volatile sink;

__attribute__((noinline)) void cache_add(size_t n) {
  struct entry *e = malloc(sizeof *e);
  e->value = malloc(n);
  memset(e->value, 1, n);
  pthread_mutex_lock(&lock);
  e->next = cache;
  cache = e;
  pthread_mutex_unlock(&lock);
}

__attribute__((noinline)) void handle_request(unsigned i) {
  char *scratch = malloc(64 + (i % 4000));
  sink = scratch;
  free(scratch);
  if (i % 50 == 0) cache_add(1024);
}

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
static long long longest[2];

static void *worker(void *arg) {
  unsigned i = (unsigned)(long)arg;
  long long *most = &longest[(long)arg];
  while (!stop) {
    long long t0 = now_ns();
    handle_request(i++);
    long long d = now_ns() - t0;
    if (d > *most) *most = d;
    if (i % 1000 == 0) usleep(1000);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int secs = argc > 1 ? atoi(argv[1]) : 5;
  pthread_t t[2];
  for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  /* a signal (the tests send dump signals) cuts sleep short: sleep until the deadline */
  struct timespec end, now;
  clock_gettime(CLOCK_MONOTONIC, &end);
  end.tv_sec += secs;
  do {
    sleep(1);
    clock_gettime(CLOCK_MONOTONIC, &now);
  } while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
  stop = 1;
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  fprintf(stderr, "longest request: %lld ms\n", (longest[0] > longest[1] ? longest[0] : longest[1]) / 1000000);
  printf("done\n");
  return 0;
}
