/* Every way glibc joins a thread: pthread_join, pthread_tryjoin_np,
 * pthread_timedjoin_np, pthread_clockjoin_np; plus a pthread_create that
 * fails (a stack no mmap can give). Nothing may be reported as a leaked
 * thread. Prints what each call returned. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void *quick(void *a) { return a; }

int main(void) {
  pthread_t a, b, c, d, e;
  pthread_create(&a, NULL, quick, NULL);
  pthread_create(&b, NULL, quick, NULL);
  pthread_create(&c, NULL, quick, NULL);
  pthread_create(&d, NULL, quick, NULL);
  pthread_attr_t huge;
  pthread_attr_init(&huge);
  pthread_attr_setstacksize(&huge, (size_t)1 << 46);
  int failed = pthread_create(&e, &huge, quick, NULL) != 0;
  usleep(100000); /* all four have ended: tryjoin succeeds */
  int r0 = pthread_join(a, NULL);
  int r1 = pthread_tryjoin_np(b, NULL);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 5;
  int r2 = pthread_timedjoin_np(c, NULL, &ts);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += 5;
  int r3 = pthread_clockjoin_np(d, NULL, CLOCK_MONOTONIC, &ts);
  printf("join=%d tryjoin=%d timedjoin=%d clockjoin=%d huge-create=%s\n", r0, r1, r2, r3, failed ? "failed" : "ok");
  return 0;
}
