/* Leaks made on other threads; pointers held only in TLS or on a blocked
 * thread's stack (neither is a leak); a thread still blocked at exit. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile sink;
static __thread char *tls_buf;
static int pipefd[2];
static pthread_barrier_t ready;

__attribute__((noinline)) void leak_on_thread(int n) {
  for (int i = 0; i < n; i++) sink = malloc(64); /* LEAK(definitely_lost) */
  sink = NULL;
}
static void *worker(void *arg) {
  leak_on_thread((int)(long)arg);
  return NULL;
}
static void *tls_holder(void *arg) {
  (void)arg;
  tls_buf = malloc(256); /* only in this thread's TLS */
  pthread_barrier_wait(&ready);
  char c;
  if (read(pipefd[0], &c, 1) < 0) return NULL; /* blocks forever */
  return tls_buf;
}
static void *stack_holder(void *arg) {
  (void)arg;
  char *volatile mine = malloc(512); /* only on this blocked thread's stack */
  pthread_barrier_wait(&ready);
  char c;
  if (read(pipefd[0], &c, 1) < 0) return NULL;
  return mine;
}

int main(void) {
  if (pipe(pipefd)) return 1;
  pthread_barrier_init(&ready, NULL, 3);
  pthread_t t[4];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)(long)(3 + i));
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  pthread_create(&t[2], NULL, tls_holder, NULL);
  pthread_create(&t[3], NULL, stack_holder, NULL);
  pthread_barrier_wait(&ready);
  return 0; /* two threads still blocked */
}
