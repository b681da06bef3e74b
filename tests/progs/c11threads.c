/* C11 threads (thrd_create, thrd_join, thrd_detach), which glibc builds on
 * its pthread functions internally, past the agent's pthread hooks: one
 * blocked forever at exit (a leaked thread), one joined (its int result
 * must come back), one detached that finishes (neither is reported). */
#include <stdio.h>
#include <stdlib.h>
#include <threads.h>
#include <unistd.h>

static int stuck_c11(void *arg) {
  (void)arg;
  for (;;) pause();
  return 0;
}
static int joined_c11(void *arg) { return 40 + *(int *)arg; }
static int detached_c11(void *arg) {
  (void)arg;
  return 0;
}

int main(void) {
  thrd_t a, b, c;
  int two = 2, res = 0;
  if (thrd_create(&a, stuck_c11, NULL) != thrd_success) return 1;
  if (thrd_create(&b, joined_c11, &two) != thrd_success) return 1;
  if (thrd_join(b, &res) != thrd_success) return 1;
  if (thrd_create(&c, detached_c11, NULL) != thrd_success || thrd_detach(c) != thrd_success) return 1;
  usleep(200000); /* the detached one finishes */
  printf("joined result %d\n", res);
  return 0;
}
