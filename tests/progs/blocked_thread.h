/* A thread that blocks for good in read(2) on a pipe, for programs whose
 * report must list it: blocked_pipes() first, then pthread_create(...,
 * blocked, ...) in the caller (the report names the creating function),
 * then wait_blocked(). */
#include <unistd.h>

static int fds[2], ready[2];

static int blocked_pipes(void) { return pipe(fds) || pipe(ready) ? -1 : 0; }

static void *blocked(void *a) {
  char c = 1;
  if (write(ready[1], &c, 1) != 1) return a;
  return read(fds[0], &c, 1) == 1 ? NULL : a;
}

/* The thread is about to block: give it the moment to get there. */
static void wait_blocked(void) {
  char c;
  if (read(ready[0], &c, 1) == 1) usleep(100000);
}
