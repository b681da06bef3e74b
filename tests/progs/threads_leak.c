/* Leaked threads, every way a thread gets stuck, chosen by argv[1]:
 *   stuck  threads blocked on a pipe read, a condition variable, a mutex held
 *          by a thread that ended, a join of a thread that never ends, a
 *          sleep; a joinable thread that ended and was never joined; detached
 *          threads that finish (not leaks). Exits with all of that going on.
 *   churn  10,000 short-lived threads, each joined: nothing to report.
 *   api    heapscope_threads_mark/check around a clean and a leaky section.
 *   early  on one CPU, 20 threads that block on a pipe read, created in a
 *          row, and main returns at once: most have not begun when the
 *          exit report starts. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heapscope.h"

static int pipefd[2];
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER, cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_t forever_th;

static void *pipe_reader(void *a) {
  char c;
  return (void *)(long)read(pipefd[0], &c, 1) + (long)a;
}
static void *cond_waiter(void *a) {
  pthread_mutex_lock(&cm);
  for (;;) pthread_cond_wait(&cv, &cm);
  return a;
}
static void *mutex_holder(void *a) {
  pthread_mutex_lock(&m); /* and ends without unlocking */
  return a;
}
static void *mutex_waiter(void *a) {
  pthread_mutex_lock(&m);
  return a;
}
static void *forever(void *a) {
  for (;;) pause();
  return a;
}
static void *joiner(void *a) {
  pthread_join(forever_th, NULL);
  return a;
}
static void *sleeper(void *a) {
  sleep(1000);
  return a;
}
static void *quick(void *a) { return a; }

static void stuck(void) {
  pthread_t t;
  if (pipe(pipefd)) exit(1);
  pthread_create(&t, NULL, pipe_reader, NULL);
  pthread_create(&t, NULL, cond_waiter, NULL);
  pthread_t holder;
  pthread_create(&holder, NULL, mutex_holder, NULL); /* never joined */
  usleep(20000);
  pthread_create(&t, NULL, mutex_waiter, NULL);
  pthread_create(&forever_th, NULL, forever, NULL);
  pthread_create(&t, NULL, joiner, NULL);
  pthread_setname_np(t, "the-joiner");
  pthread_create(&t, NULL, sleeper, NULL);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (int i = 0; i < 3; i++) pthread_create(&t, &attr, quick, NULL);
  pthread_create(&t, NULL, quick, NULL);
  pthread_detach(t);
  usleep(100000);
  printf("exiting with stuck threads\n");
}

static void churn(void) {
  for (int i = 0; i < 10000; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, quick, NULL)) {
      perror("pthread_create");
      exit(1);
    }
    pthread_join(t, NULL);
  }
  printf("churned\n");
}

static void api(void) {
  char report[8192];
  unsigned long mark = heapscope_threads_mark();
  pthread_t t;
  pthread_create(&t, NULL, quick, NULL);
  pthread_join(t, NULL);
  printf("clean=%d\n", heapscope_threads_check(mark, 1000, report, sizeof report));
  mark = heapscope_threads_mark();
  if (pipe(pipefd)) exit(1);
  pthread_create(&t, NULL, pipe_reader, NULL);
  int n = heapscope_threads_check(mark, 200, report, sizeof report);
  printf("leaky=%d\n", n);
  fputs(report, stderr);
  if (write(pipefd[1], "x", 1) != 1) exit(1); /* release it */
  pthread_join(t, NULL);
  printf("released=%d\n", heapscope_threads_check(mark, 1000, report, sizeof report));
}

static void early_exit(void) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  sched_setaffinity(0, sizeof one, &one); /* the new threads inherit it */
  if (pipe(pipefd)) exit(1);
  pthread_t t;
  for (int i = 0; i < 20; i++) pthread_create(&t, NULL, pipe_reader, NULL);
  printf("created 20\n");
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "stuck";
  if (!strcmp(mode, "stuck")) stuck();
  if (!strcmp(mode, "serve")) { /* stuck, then stay up for the HTTP tests */
    stuck();
    fflush(stdout);
    for (int i = 0; i < (argc > 2 ? atoi(argv[2]) : 3) * 10; i++) usleep(100000);
  }
  if (!strcmp(mode, "churn")) churn();
  if (!strcmp(mode, "api")) api();
  if (!strcmp(mode, "early")) early_exit();
  return 0;
}
